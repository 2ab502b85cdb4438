// Package lease keeps a lease of the state store (state.Leases) for a
// background job that must run on one collector at a time when several share
// one PostgreSQL: the lease is taken, then renewed every third of its TTL;
// the job runs only while Held says so, and metrics registered through
// Registerer are exported only by the holder, so that Prometheus sees one
// figure, not one per collector.
//
// A holder that cannot renew (its database unreachable, its process
// stopped) stops believing it holds the lease when the TTL since its last
// renewal has passed on its clock; the store gives the lease to another
// holder from the same instant on that holder's clock, so the clocks must
// agree to well within the TTL. Closing releases the lease: a collector
// stopped cleanly hands its jobs over at once.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/state"
)

// DefaultTTL is how long a lease lasts without renewal: how long the jobs of
// a collector killed without a chance to release wait for another to take
// over.
const DefaultTTL = 30 * time.Second

// Options configure a Lease.
type Options struct {
	Store state.Leases
	// Name names the lease (the job's), Holder this process among those that
	// share the store (unique: Holder makes one).
	Name, Holder string
	// TTL is how long a renewal holds; default DefaultTTL.
	TTL    time.Duration
	Clock  clock.Clock
	Logger *slog.Logger
	// Registry, if set, receives paasmeter_collector_lease_held{lease}.
	Registry prometheus.Registerer
}

// Lease is one holder's view of a named lease.
type Lease struct {
	o Options
	// gained is signalled when the lease becomes held (Gained).
	gained chan struct{}

	mu sync.Mutex
	// until is when the lease ends by this holder's clock, unless renewed;
	// zero when another holds it.
	until time.Time
	// served is whether the job ran (Served) since the lease was last taken.
	served bool
}

// New returns the lease; nothing is taken before Renew or Run.
func New(o Options) (*Lease, error) {
	if o.Store == nil || o.Name == "" || o.Holder == "" {
		return nil, errors.New("lease: a store, a name and a holder are required")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Lease{o: o, gained: make(chan struct{}, 1)}
	if o.Registry != nil {
		held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "paasmeter_collector_lease_held",
			Help:        "1 while this collector holds the lease of a job that runs on one collector at a time (state store's leases), else 0.",
			ConstLabels: prometheus.Labels{"lease": o.Name}}, func() float64 {
			if l.Held() {
				return 1
			}
			return 0
		})
		if err := o.Registry.Register(held); err != nil {
			return nil, fmt.Errorf("lease %s: register metrics: %w", o.Name, err)
		}
	}
	return l, nil
}

// Holder returns a holder name for this process: the host name, the process
// id and a random part, so that a restarted process is a new holder.
func Holder() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d/%08x", host, os.Getpid(), rand.Uint32())
}

// Renew takes or renews the lease once and reports whether this holder has
// it. On an error the lease is kept until its end: a database blip shorter
// than the TTL changes nothing.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	// The time is read before asking: the end this holder believes in is
	// never later than the one the store keeps.
	now := l.o.Clock.Now()
	// A store that does not answer (packets dropped, not refused) must not
	// hold the renewer past its next turn: the lease lapses meanwhile anyway.
	ctx, cancel := context.WithTimeout(ctx, l.o.TTL/3)
	defer cancel()
	ok, err := l.o.Store.AcquireLease(ctx, l.o.Name, l.o.Holder, now, l.o.TTL)
	l.mu.Lock()
	defer l.mu.Unlock()
	was := now.Before(l.until)
	switch {
	case err != nil:
		return was, fmt.Errorf("lease %s: %w", l.o.Name, err)
	case ok:
		l.until = now.Add(l.o.TTL)
		if !was {
			l.served = false
			l.o.Logger.Info("lease taken: this collector runs the job", "lease", l.o.Name, "holder", l.o.Holder, "ttl", l.o.TTL)
			select {
			case l.gained <- struct{}{}:
			default:
			}
		}
	default:
		if was {
			l.o.Logger.Warn("lease lost to another collector", "lease", l.o.Name, "holder", l.o.Holder)
		}
		l.until = time.Time{}
	}
	return ok, nil
}

// Held reports whether this holder has the lease now: it took or renewed it
// less than a TTL ago by its clock.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.o.Clock.Now().Before(l.until)
}

// Gained is signalled when the lease becomes this holder's, so that its job
// runs at once rather than at its next interval.
func (l *Lease) Gained() <-chan struct{} { return l.gained }

// Run renews the lease every third of its TTL until ctx ends, then releases
// it if held.
func (l *Lease) Run(ctx context.Context) {
	t := time.NewTicker(l.o.TTL / 3)
	defer t.Stop()
	for {
		if _, err := l.Renew(ctx); err != nil && ctx.Err() == nil {
			l.o.Logger.Warn("lease not renewed; retrying", "lease", l.o.Name, "held", l.Held(), "err", err)
		}
		select {
		case <-ctx.Done():
			l.Release(context.WithoutCancel(ctx))
			return
		case <-t.C:
		}
	}
}

// Release gives the lease up if held, so that another holder takes it at its
// next renewal.
func (l *Lease) Release(ctx context.Context) {
	l.mu.Lock()
	held := l.o.Clock.Now().Before(l.until)
	l.until = time.Time{}
	l.mu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.o.Store.ReleaseLease(ctx, l.o.Name, l.o.Holder); err != nil {
		l.o.Logger.Warn("lease not released: another collector takes it when it expires", "lease", l.o.Name, "err", err)
	}
}

// Served records that the job ran while this holder had the lease: its
// figures are this holder's from now on (Registerer).
func (l *Lease) Served() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.o.Clock.Now().Before(l.until) {
		l.served = true
	}
}

// Registerer returns a registerer over reg whose collectors are collected
// only while the lease is held and the job has run (Served) since it was
// taken: a collector that lost the lease stops exporting the figures it no
// longer updates, and one that took it over exports none before its first
// run has set them (a zero or an old "last success" would page).
func (l *Lease) Registerer(reg prometheus.Registerer) prometheus.Registerer {
	return gatedRegisterer{reg: reg, held: func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.served && l.o.Clock.Now().Before(l.until)
	}}
}

type gatedRegisterer struct {
	reg  prometheus.Registerer
	held func() bool
}

func (g gatedRegisterer) Register(c prometheus.Collector) error {
	return g.reg.Register(gated{Collector: c, held: g.held})
}

func (g gatedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := g.Register(c); err != nil {
			panic(err)
		}
	}
}

func (g gatedRegisterer) Unregister(c prometheus.Collector) bool {
	return g.reg.Unregister(gated{Collector: c, held: g.held})
}

// gated is a collector collected only while held says so; it describes the
// same metrics always, so the registry checks them as the collector's.
type gated struct {
	prometheus.Collector
	held func() bool
}

func (g gated) Collect(ch chan<- prometheus.Metric) {
	if g.held() {
		g.Collector.Collect(ch)
	}
}
