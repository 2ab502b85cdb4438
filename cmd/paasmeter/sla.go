package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/state"
)

// newSLAEngine builds the SLA engine of cfg over the stored events and the
// declared maintenance windows (nil: none).
func (a *app) newSLAEngine(cfg *config.Config, ev metering.EventReader, ws sla.WindowSource) (*sla.Engine, error) {
	c := sla.DefaultConfig()
	loc, err := cfg.Location()
	if err != nil {
		return nil, err
	}
	c.Location, c.CreditTiers = loc, cfg.Billing.SLACreditTiers
	return sla.NewEngine(ev, ws, c, a.clock)
}

func (a *app) slaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sla",
		Short: "Availability of the institutions' production apps per calendar month",
	}
	var month, format string
	var tenants []string
	report := &cobra.Command{
		Use:   "report",
		Short: "Each production app's minutes (up, down by cause, maintenance, not eligible), availability and credit tier",
		Long: `The SLA report of a month in the platform's time zone (DESIGN.md §6): for each
institution and production app, the eligible minutes, the minutes down by cause
(platform or tenant), the minutes in declared maintenance windows (left out of
the availability), the availability and the credit tier. The running month is
reported up to a minute ago. Invoices take their SLA credit from the same figures
unless billing.sla_file is set.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			log := a.logger(cfg)
			ms, err := openMeteringStore(c.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer ms.Close()
			ws, closeWindows, err := a.openWindows(c.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer closeWindows()
			eng, err := a.newSLAEngine(cfg, ms, ws)
			if err != nil {
				return err
			}
			loc, _ := cfg.Location()
			p, err := calendar.Parse(month, loc)
			if err != nil {
				return err
			}
			if len(tenants) == 0 {
				for _, t := range cfg.Tenants {
					tenants = append(tenants, t.ID)
				}
			}
			var reps []*sla.Report
			for _, t := range tenants {
				if !cfg.Tenants.Has(t) {
					return fmt.Errorf("--tenant: %q is not a configured institution", t)
				}
				r, err := eng.Report(c.Context(), t, p)
				if err != nil {
					return err
				}
				reps = append(reps, r)
			}
			switch format {
			case "json":
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(reps)
			case "text":
				writeSLAText(a.stdout, reps)
				return nil
			}
			return fmt.Errorf("--format: %q must be text or json", format)
		},
	}
	report.Flags().StringVar(&month, "month", "", "month, e.g. 2026-11 (in the platform time zone)")
	report.Flags().StringSliceVar(&tenants, "tenant", nil, "only these institutions (repeatable; default all)")
	report.Flags().StringVar(&format, "format", "text", "output: text or json")
	_ = report.MarkFlagRequired("month")
	cmd.AddCommand(report)
	return cmd
}

func writeSLAText(w io.Writer, reps []*sla.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TENANT\tPROJECT/APP\tELIGIBLE\tUP\tDOWN PLATFORM\tDOWN TENANT\tMAINTENANCE\tNOT ELIGIBLE\tAVAILABILITY %\tCREDIT %\t")
	for _, r := range reps {
		for _, ap := range r.Apps {
			fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\t\n", r.Tenant, ap.Project, ap.App, ap.Eligible, ap.Up,
				ap.DownPlatform, ap.DownTenant, ap.Maintenance, ap.NotEligible, ap.Availability.StringFixed(4))
		}
		fmt.Fprintf(tw, "%s\t(all prod apps)\t%d\t\t%d\t%d\t%d\t\t%s\t%s\t\n", r.Tenant, r.Eligible, r.DownPlatform, r.DownTenant,
			r.Maintenance, r.Availability.StringFixed(4), r.CreditPercent.String())
		for _, win := range r.Windows {
			fmt.Fprintf(tw, "%s\twindow %s\t%s – %s\t%s\t\t\t\t\t\t\t\n", r.Tenant, win.ID, win.Start.Format("2006-01-02 15:04Z"),
				win.End.Format("2006-01-02 15:04Z"), win.Reason)
		}
	}
	tw.Flush()
}

// slaReports serves the collector's SLA route: the engine's report and the
// changes of the maintenance windows it counts.
type slaReports struct {
	engine  *sla.Engine
	windows *maintenance.Service
}

func (r slaReports) Report(ctx context.Context, tenant string, p calendar.Month) (*sla.Report, []state.AuditEntry, error) {
	rep, err := r.engine.Report(ctx, tenant, p)
	if err != nil {
		return nil, nil, err
	}
	changes, err := r.windows.Changes(ctx, tenant, p.Start(), p.End())
	if err != nil {
		return nil, nil, fmt.Errorf("maintenance window changes of %s: %w", tenant, err)
	}
	return rep, changes, nil
}

// slaMetricsInterval is how often the collector recomputes the month's SLA
// gauges: a minute, the SLA's own resolution.
const slaMetricsInterval = time.Minute

// startSLAMetrics exports the running month's paasmeter_sla_* gauges on reg,
// recomputed every slaMetricsInterval; stop waits for a computation in
// progress, so the stores can be closed after it.
func (a *app) startSLAMetrics(ctx context.Context, cfg *config.Config, engine *sla.Engine, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	x, err := sla.NewExporter(reg, engine)
	if err != nil {
		return nil, err
	}
	var tenants []string
	for _, t := range cfg.Tenants {
		tenants = append(tenants, t.ID)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(slaMetricsInterval)
		defer t.Stop()
		for {
			if err := x.Update(ctx, tenants, a.clock.Now()); err != nil && ctx.Err() == nil {
				log.Error("SLA metrics not updated", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}
