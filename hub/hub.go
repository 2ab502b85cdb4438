// Package hub is the collector side's composition root: it builds the stores,
// the services and the collector that `paasmeter collector`, `up` and the
// invoice, reconcile, SLA and maintenance commands run, each once and in
// dependency order, and closes them in the reverse order.
//
// A part of the hub is a named Module with the modules it needs, on the model
// of Loki's modules: Open is given the modules a command needs and builds
// those and what they need, nothing more, so that `maintenance list` opens
// the state store alone and `paasmeter collector` everything. A new store or
// service plugs in as one more module: a name, its dependencies and its init
// function (modules.go).
package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/lease"
)

// Options are what the hub takes from the process that runs it rather than
// from the configuration.
type Options struct {
	// Clock is the "now" of every module: the running month, the grace
	// period, the SLA's last minute, the maintenance lead time, the
	// collector's received_at. Default: the wall clock.
	Clock clock.Clock
	// Logger receives every module's log lines. Default: none are written.
	Logger *slog.Logger
	// Stdout receives the spans of tracing's stdout exporter. Default: discarded.
	Stdout io.Writer
	// Version is the build's version, as the traces carry it.
	Version string
}

// Hub holds the modules Open built. Each accessor returns nil for a module
// that was not built: one neither asked for nor needed by one asked for.
type Hub struct {
	cfg  *config.Config
	opts Options
	loc  *time.Location
	// closers close the modules built so far, in the order they were built.
	closers []func() error

	billingOpts *billing.Options // RateCard: billing's options but the stores
	tracer      trace.TracerProvider
	metering    metering.Store
	accessLog   *accesslog.File
	state       state.Store
	maintenance *maintenance.Service
	sla         *sla.Calculator
	billing     *billing.Service
	registry    *prometheus.Registry
	server      *collector.Server
	// holder names this process among the collectors that share the state
	// store's leases.
	holder string
}

// Open builds the modules of needs and those they need, in dependency order,
// from cfg. On an error it closes what it built and returns the error as
// the module gave it. The jobs of ReconcileMetrics and SLAMetrics run until
// ctx ends or Close is called; the traces of Tracing are flushed by Close
// even after ctx ended.
func Open(ctx context.Context, cfg *config.Config, o Options, needs ...Module) (*Hub, error) {
	loc, err := cfg.Location()
	if err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	h := &Hub{cfg: cfg, opts: o, loc: loc, holder: lease.Holder()}
	table := h.modules()
	order, err := resolve(table, needs)
	if err != nil {
		return nil, err
	}
	for _, m := range order {
		if init := table[m].init; init != nil {
			if err := init(ctx); err != nil {
				return nil, errors.Join(err, h.Close())
			}
		}
	}
	return h, nil
}

// Close closes the modules in the reverse order of their building: the jobs
// stop before the stores they read close, the stores before the traces are
// flushed. It returns their errors joined; a second Close does nothing.
func (h *Hub) Close() error {
	var errs []error
	for i := len(h.closers) - 1; i >= 0; i-- {
		errs = append(errs, h.closers[i]())
	}
	h.closers = nil
	return errors.Join(errs...)
}

// onClose adds close to what Close runs, after the closers of the modules
// built later than this one.
func (h *Hub) onClose(close func() error) { h.closers = append(h.closers, close) }

// Module names a part of the hub.
type Module string

// module is a Module's place in the hub: the modules it needs, built
// before it, and how to build it (nil: it only gathers its dependencies).
type module struct {
	deps []Module
	init func(ctx context.Context) error
}

// resolve returns needs and their dependencies in the order to build them:
// each after the modules it needs, otherwise in the order they are named.
func resolve(table map[Module]module, needs []Module) ([]Module, error) {
	const (
		visiting = 1
		done     = 2
	)
	seen := map[Module]int{}
	var order []Module
	var visit func(m Module, from Module) error
	visit = func(m, from Module) error {
		switch seen[m] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("hub: module %q needs itself (through %q)", m, from)
		}
		mod, ok := table[m]
		if !ok {
			if from == "" {
				return fmt.Errorf("hub: unknown module %q", m)
			}
			return fmt.Errorf("hub: unknown module %q (needed by %q)", m, from)
		}
		seen[m] = visiting
		for _, d := range mod.deps {
			if err := visit(d, m); err != nil {
				return err
			}
		}
		seen[m] = done
		order = append(order, m)
		return nil
	}
	for _, m := range needs {
		if err := visit(m, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Config returns the configuration the hub was opened with.
func (h *Hub) Config() *config.Config { return h.cfg }

// Location returns the platform's time zone (the configuration's time_zone).
func (h *Hub) Location() *time.Location { return h.loc }

// Tenants returns the ids of the configured institutions, in their order.
func (h *Hub) Tenants() []string { return h.cfg.Tenants.IDs() }

// RateCard returns the rate card of RateCard.
func (h *Hub) RateCard() *ratecard.Card {
	if h.billingOpts == nil {
		return nil
	}
	return h.billingOpts.Card
}

// MeteringStore returns the store of MeteringStore.
func (h *Hub) MeteringStore() metering.Store { return h.metering }

// StateStore returns the store of StateStore.
func (h *Hub) StateStore() state.Store { return h.state }

// Maintenance returns the service of Maintenance.
func (h *Hub) Maintenance() *maintenance.Service { return h.maintenance }

// SLACalculator returns the calculator of SLACalculator.
func (h *Hub) SLACalculator() *sla.Calculator { return h.sla }

// Billing returns the service of Billing.
func (h *Hub) Billing() *billing.Service { return h.billing }

// CollectorServer returns the collector of CollectorServer, ready to Run.
func (h *Hub) CollectorServer() *collector.Server { return h.server }
