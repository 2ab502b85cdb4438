// Command paasmeter is the platform's observability and metering hub: one binary
// whose subcommands are its components (collector, agent, invoice, …).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	_ "time/tzdata" // the platform time zone must resolve on hosts without tzdata

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/internal/clock"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdout, os.Stderr, os.Getenv, clock.System{}).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "paasmeter:", termSafe(err.Error())) // errors can quote what a collector or a tenant sent
		os.Exit(1)
	}
}

// app is what every subcommand shares: where to write, how to read the
// configuration, and what time it is.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// clock is the only "now" of every subcommand: the running month, the
	// grace period, the issue cutoff, the SLA's last minute and the
	// maintenance lead time all come from it. main passes the wall clock;
	// tests pass a clock of their own, which is the hook that lets them run
	// the commands at any date (there is deliberately no flag for it).
	clock      clock.Clock
	configPath string
}

func newRoot(stdout, stderr io.Writer, getenv func(string) string, clk clock.Clock) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv, clock: clk}
	root := &cobra.Command{
		Use:   "paasmeter",
		Short: "Observability and metering hub of a multi-tenant container platform",
		Long: `paasmeter meters the containers of a multi-tenant platform, keeps their usage
records exactly once, and turns them into dashboards, alerts, SLA reports and
monthly invoices.

Components run as subcommands of this one binary. Each reads the same YAML
configuration file (--config); see README.md for its reference.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&a.configPath, "config", "c", "paasmeter.yaml", "configuration file")
	root.AddCommand(a.collectorCmd(), a.agentCmd(), a.spoolCmd(), a.configCmd(), a.tokenCmd(), a.usageCmd(), a.upCmd(), a.logsCmd(), a.invoiceCmd(), a.reconcileCmd(), a.maintenanceCmd(), a.slaCmd(), a.auditCmd())
	return root
}

// group returns a command that only holds subcommands: paasmeter invoice,
// spool, token…
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long}
	cmd.AddCommand(subs...)
	return cmd
}

// loadConfig reads and validates the configuration file.
func (a *app) loadConfig() (*config.Config, error) {
	return config.Load(a.configPath, a.getenv)
}

// logger returns the process logger the configuration asks for.
func (a *app) logger(c *config.Config) *slog.Logger {
	lv, _ := c.Log.SlogLevel() // validated by Load
	opts := &slog.HandlerOptions{Level: lv}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(a.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(a.stderr, opts))
}

// hubOptions are what the hub takes from the app: its clock and stdout, and
// log, the logger of the configuration.
func (a *app) hubOptions(log *slog.Logger) hub.Options {
	return hub.Options{Clock: a.clock, Logger: log, Stdout: a.stdout, Version: version}
}

// withHub loads the configuration, opens the hub's modules that needs name,
// runs fn with them and closes them, joining Close's error to fn's.
func (a *app) withHub(ctx context.Context, fn func(*hub.Hub) error, needs ...hub.Module) (err error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	h, err := hub.Open(ctx, cfg, a.hubOptions(a.logger(cfg)), needs...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, h.Close()) }()
	return fn(h)
}

// withMonth is withHub for a command over a calendar month: fn gets month
// (2026-11) parsed in the platform's time zone.
func (a *app) withMonth(ctx context.Context, month string, fn func(*hub.Hub, calendar.Month) error, needs ...hub.Module) error {
	return a.withHub(ctx, func(h *hub.Hub) error {
		p, err := calendar.Parse(month, h.Location())
		if err != nil {
			return err
		}
		return fn(h, p)
	}, needs...)
}

// writeJSON prints v as indented JSON.
func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
