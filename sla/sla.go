// Package sla computes the monthly availability of every production app of an
// institution from the probe and lifecycle events the agents report, exactly
// as DESIGN.md §6 defines it: minute by minute over the calendar month in the
// platform's time zone, each minute up, down (caused by the platform or the
// tenant), in a maintenance window, or not eligible (the owner stopped the
// app, or it did not exist yet).
//
// The arithmetic is pure (minutes.go: Classify); Calculator (calculator.go) reads a
// tenant's events from the metering store and its maintenance windows from a
// WindowSource and sums the apps into a Report, which is also the
// billing.SLASource invoices take their SLA credit from; Exporter
// (metrics.go) publishes the month to date as Prometheus gauges.
package sla

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/shopspring/decimal"
)

// Cause says who a down minute is attributed to. Only platform-caused minutes
// count against the availability and earn a credit; tenant-caused ones are
// reported so the institution sees them.
type Cause string

// The causes of a down minute.
const (
	// CausePlatform: node, agent or engine down, a platform-initiated kill, no data.
	CausePlatform Cause = "platform"
	// CauseTenant: the app's own exit, an OOM kill within its own limit, its
	// health check failing while the node is healthy.
	CauseTenant Cause = "tenant"
)

// Scope is what a maintenance window applies to. An empty field is a
// wildcard: all empty is platform-wide, only Tenant set is the whole
// institution, Tenant+Project+App one app.
type Scope struct {
	Tenant  string `json:"tenant,omitempty"`
	Project string `json:"project,omitempty"`
	App     string `json:"app,omitempty"`
}

// Applies reports whether the scope covers the app project/app of tenant.
func (s Scope) Applies(tenant, project, app string) bool {
	return (s.Tenant == "" || s.Tenant == tenant) && (s.Project == "" || s.Project == project) && (s.App == "" || s.App == app)
}

// String names the scope as an operator reads it.
func (s Scope) String() string {
	switch {
	case s.Tenant == "" && s.Project == "" && s.App == "":
		return "platform"
	case s.Project == "" && s.App == "":
		return s.Tenant
	default:
		return s.Tenant + "/" + s.Project + "/" + s.App
	}
}

// Window is one occurrence of a maintenance window: [Start, End), minute
// aligned. Declaring, recurring, validating (the notice period) and storing
// windows is the business of whoever implements WindowSource; this package
// only consumes the occurrences that count.
type Window struct {
	ID string `json:"id"`
	Scope
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Reason     string    `json:"reason,omitempty"`
	DeclaredAt time.Time `json:"declared_at"`
}

// Covers reports whether t is inside the window. A minute is in a window
// when the window covers the minute's start.
func (w *Window) Covers(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// Overlaps reports whether the window and [from, to) share an instant.
func (w *Window) Overlaps(from, to time.Time) bool { return w.Start.Before(to) && w.End.After(from) }

// WindowSource gives the maintenance windows that count for a tenant.
type WindowSource interface {
	// Windows returns every occurrence overlapping [from, to) that applies to
	// tenant: platform-wide ones, the tenant's own and those of its apps.
	Windows(ctx context.Context, tenant string, from, to time.Time) ([]Window, error)
}

// Outage is a run of consecutive down minutes of one cause.
type Outage struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Cause   Cause     `json:"cause"`
	Minutes int64     `json:"minutes"`
}

// AppMinutes is how one production app's minutes of a period were classified.
// Total = Eligible + Maintenance + NotEligible + Future, and
// Eligible = Up + DownPlatform + DownTenant.
type AppMinutes struct {
	Project string `json:"project"`
	App     string `json:"app"`
	// Total is every minute of the period; Future those that had not ended
	// when the report was made (they are neither eligible nor down).
	Total       int64 `json:"total_minutes"`
	Eligible    int64 `json:"eligible_minutes"`
	Up          int64 `json:"up_minutes"`
	Maintenance int64 `json:"maintenance_minutes"`
	NotEligible int64 `json:"not_eligible_minutes"`
	Future      int64 `json:"future_minutes"`
	// DownPlatform counts against the availability; DownTenant is reported only.
	DownPlatform int64 `json:"down_platform_minutes"`
	DownTenant   int64 `json:"down_tenant_minutes"`
	// Availability is (Eligible − DownPlatform) / Eligible in percent, 4
	// decimals rounded half up; 100 when no minute was eligible.
	Availability decimal.Decimal `json:"availability"`
	// Windows are the maintenance windows of the app overlapping the period.
	Windows []Window `json:"windows,omitempty"`
	// Outages lists the down minutes as runs, oldest first.
	Outages []Outage `json:"outages,omitempty"`
}

// Down returns the app's down minutes of cause c.
func (a *AppMinutes) Down(c Cause) int64 {
	switch c {
	case CausePlatform:
		return a.DownPlatform
	case CauseTenant:
		return a.DownTenant
	}
	return 0
}

// Report is an institution's SLA report for one month: its production apps
// and their minute-weighted sums.
type Report struct {
	Tenant string `json:"tenant"`
	// Period is the month, "2026-03".
	Period string `json:"period"`
	// Apps are sorted by project, then app.
	Apps         []AppMinutes `json:"apps"`
	Eligible     int64        `json:"eligible_minutes"`
	DownPlatform int64        `json:"down_platform_minutes"`
	DownTenant   int64        `json:"down_tenant_minutes"`
	Maintenance  int64        `json:"maintenance_minutes"`
	// Availability is the same ratio as an app's over the sums of all apps.
	Availability decimal.Decimal `json:"availability"`
	// CreditPercent is what the availability earns under the credit tiers.
	CreditPercent decimal.Decimal `json:"credit_percent"`
	// Windows are every maintenance window of the tenant overlapping the
	// month, listed in the report as DESIGN.md §6 asks.
	Windows []Window `json:"windows,omitempty"`
	// Until is the instant the report covers up to (the end of the last
	// minute counted): the month's end once it is over.
	Until time.Time `json:"until"`
}

// Config is how availability is measured.
type Config struct {
	// Location is the platform's time zone: months are calendar months there.
	Location *time.Location
	// DownThreshold is how long within a minute no replica may pass the probe
	// before the minute is down (DESIGN.md §6: 30 s).
	DownThreshold time.Duration
	// ProbeStaleness is how long a probe result holds when no next probe of
	// the replica comes: after it the replica has no data. It must exceed the
	// longest probe interval of any app (the runtime's default is 10 s).
	ProbeStaleness time.Duration
	// Lookback is how far before the month events are read, so the state of
	// each app when the month starts is known.
	Lookback time.Duration
	// Settle is how long after a minute ends its events may still be on
	// their way to the store: a report of the running month counts only the
	// minutes that ended at least Settle ago, so a shipping delay never
	// shows as missing probe data.
	Settle time.Duration
	// CreditTiers turn the institution's availability into a credit percent.
	CreditTiers []credit.Tier
}

// DefaultConfig returns DESIGN.md §6's settings in Europe/Brussels. When the
// time zone database is missing Location stays nil and Validate says so
// (the paasmeter binary embeds time/tzdata, so it never is).
func DefaultConfig() Config {
	loc, _ := time.LoadLocation("Europe/Brussels") // nil on error: Validate reports it
	return Config{
		Location:       loc,
		DownThreshold:  30 * time.Second,
		ProbeStaleness: 30 * time.Second,
		Lookback:       24 * time.Hour,
		Settle:         time.Minute,
		CreditTiers:    credit.DefaultTiers(),
	}
}

var hundred = decimal.NewFromInt(100)

// Validate reports every setting that is out of range, naming it.
func (c *Config) Validate() error {
	var errs []error
	if c.Location == nil {
		errs = append(errs, errors.New("location: is required (the platform's time zone)"))
	}
	if c.DownThreshold <= 0 || c.DownThreshold > time.Minute {
		errs = append(errs, fmt.Errorf("down_threshold: %s must be more than 0 and at most 1m", c.DownThreshold))
	}
	if c.ProbeStaleness <= 0 {
		errs = append(errs, fmt.Errorf("probe_staleness: %s must be positive", c.ProbeStaleness))
	}
	if c.Lookback < c.ProbeStaleness {
		errs = append(errs, fmt.Errorf("lookback: %s must be at least the probe staleness %s", c.Lookback, c.ProbeStaleness))
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("settle: %s must not be negative", c.Settle))
	}
	if len(c.CreditTiers) == 0 {
		errs = append(errs, errors.New("credit_tiers: at least one tier is required"))
	}
	for i, t := range c.CreditTiers {
		if !t.Below.IsPositive() || t.Below.GreaterThan(hundred) {
			errs = append(errs, fmt.Errorf("credit_tiers[%d].below: %s must be in (0, 100]", i, t.Below))
		}
		if t.Credit.IsNegative() || t.Credit.GreaterThan(hundred) {
			errs = append(errs, fmt.Errorf("credit_tiers[%d].credit: %s must be in [0, 100]", i, t.Credit))
		}
	}
	return errors.Join(errs...)
}

// Availability returns (eligible − downPlatform) / eligible in percent,
// rounded half up to 4 decimals, and 100 when no minute was eligible: a
// month spent entirely in maintenance or stopped by its owner owes nothing.
func Availability(eligible, downPlatform int64) decimal.Decimal {
	if eligible <= 0 {
		return hundred
	}
	return decimal.NewFromInt(eligible-downPlatform).Mul(hundred).DivRound(decimal.NewFromInt(eligible), 4)
}
