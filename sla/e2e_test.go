package sla_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/nodetest"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/sla"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
)

// e2eRateCard prices reserved production memory high enough that a few
// minutes of a 32 MiB container come to euros, so the SLA credit shows.
const e2eRateCard = `currency: EUR
versions:
  - version: v1
    effective: 2020-01-01
    rates:
      - {meter: memory, class: prod, basis: reserved, unit: GiB-hour, price: 1000.00}
`

// e2eTenant is an institution no other test runs containers for: the agents
// of other tests on the shared engine report what they see of theirs.
const e2eTenant = "slatest"

const e2ePlatform = `institutions:
  - id: slatest
    quota: {cpu: 2, memory: 1Gi, containers: 4}
    projects:
      - id: claims
        apps:
          - id: web
            env: prod
            image: paasmeter-test/busybox:1
            command: [sh, -c, "mkdir -p /tmp/www && echo ok > /tmp/www/healthz && exec httpd -f -p 8080 -h /tmp/www"]
            resources: {cpu: 100m, memory: 32Mi, pids: 32}
            health: {http: {path: /healthz, port: 8080}, interval: 2s, timeout: 1s}
`

// TestAnAgentOutageIsPlatformDowntimeInTheReportAndCreditedOnTheDraft runs a
// production app on the test Docker Engine, stops the node's agent for a
// minute and a half (the container keeps running, but nobody probes it: no
// data, which DESIGN.md §6 counts as platform downtime), and checks that the
// report shows those minutes and that the invoice draft carries the credit
// they earn.
func TestAnAgentOutageIsPlatformDowntimeInTheReportAndCreditedOnTheDraft(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	// The test's minutes must fall in one month's report: within four
	// minutes of a month's end, wait for the next month (a few minutes a
	// month at most).
	if end := calendar.MonthOf(time.Now(), loc).End(); time.Until(end) < 4*time.Minute {
		time.Sleep(time.Until(end) + time.Second)
	}
	plat, err := spec.Parse([]byte(e2ePlatform), "e2e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, nodetest.Options{Sample: time.Second, Window: 10 * time.Second, Platform: plat,
		Tenants: []string{e2eTenant}})
	probes := func(after time.Time) int {
		count := 0
		err := n.Store.ScanEvents(ctx, metering.EventFilter{Tenant: e2eTenant, From: after, To: time.Now().Add(time.Hour),
			Types: []events.Type{events.Probe}}, func(e events.Event) error {
			if e.Probe.OK {
				count++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return count
	}
	waitFor := func(within time.Duration, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !cond(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %s", within, what)
			}
		}
	}
	start := time.Now()
	waitFor(60*time.Second, "the app passes no probe", func() bool { return probes(start) >= 3 })

	n.Stop()
	stopped := time.Now()
	time.Sleep(95 * time.Second) // over a minute of no data after the last result goes stale (30 s)
	n.Restart()
	restarted := time.Now()
	waitFor(60*time.Second, "the app passes no probe after the agent came back", func() bool { return probes(restarted) >= 3 })
	// The 65 s without fresh data end in the minute the agent came back in
	// and put 30 s into at least one minute: report once that minute has
	// ended (and its probes and usage windows have shipped).
	time.Sleep(time.Until(restarted.Truncate(time.Minute).Add(time.Minute + 8*time.Second)))

	cfg := sla.DefaultConfig()
	cfg.Location = loc
	cfg.Settle = 5 * time.Second // what matters has been shipped (waited for above)
	eng, err := sla.NewCalculator(n.Store, nil, cfg, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	p := calendar.MonthOf(start, loc)
	rep, err := eng.Report(ctx, e2eTenant, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Apps) != 1 {
		t.Fatalf("report of %d apps, want claims/web: %+v", len(rep.Apps), rep.Apps)
	}
	web := rep.Apps[0]
	t.Logf("claims/web: eligible %d, up %d, down platform %d, down tenant %d, availability %s; agent stopped %s, restarted %s",
		web.Eligible, web.Up, web.DownPlatform, web.DownTenant, web.Availability, stopped.Format(time.TimeOnly), restarted.Format(time.TimeOnly))
	// 95 s without the agent is 65 s without fresh probe data: one minute
	// for certain, two at most (each needs 30 s of it).
	if web.DownPlatform < 1 || web.DownPlatform > 2 || web.DownTenant != 0 {
		t.Errorf("down minutes: platform %d, tenant %d; want 1 or 2 platform-caused and none the tenant's", web.DownPlatform, web.DownTenant)
	}
	// The minute the agent stopped in was up for the most part, so the app
	// was eligible and up besides its outage (the minute it came back in may
	// not have ended yet).
	if web.Eligible < web.DownPlatform+1 || web.Up != web.Eligible-web.DownPlatform {
		t.Errorf("eligible %d, up %d, down %d: the app ran before the outage", web.Eligible, web.Up, web.DownPlatform)
	}
	if !rep.CreditPercent.IsPositive() {
		t.Fatalf("availability %s earns no credit", rep.Availability)
	}

	card, err := ratecard.Parse([]byte(e2eRateCard), "e2e-ratecard.yaml", loc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stateembedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bc := billing.DefaultConfig()
	bc.Location, bc.CreditTiers = loc, cfg.CreditTiers
	bc.Seller = billing.Seller{Name: "State Cloud Platform Services"}
	bc.Customers = []billing.Customer{{Tenant: e2eTenant, Name: "SLA test institution", VAT: billing.VAT{Category: billing.VATStandard, Rate: decimal.NewFromInt(21)}}}
	svc, err := billing.New(billing.Options{Config: bc, Card: card, Usage: n.Store, SLA: eng, State: st, Clock: clock.System{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	invs, err := svc.Draft(ctx, p, []string{e2eTenant}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv := invs[0]
	if len(inv.Allowances) != 1 {
		t.Fatalf("the draft has allowances %+v, want the SLA credit; lines %+v", inv.Allowances, inv.Lines)
	}
	al, fig := inv.Allowances[0], inv.Inputs.Months[0].SLA
	want := al.Base.Mul(rep.CreditPercent).Div(decimal.NewFromInt(100)).Round(2).Neg()
	if !al.Percent.Equal(rep.CreditPercent) || !al.Amount.Equal(want) || !al.Base.IsPositive() {
		t.Errorf("SLA credit %s %% = %s on %s, want the report's %s %% = %s", al.Percent, al.Amount.StringFixed(2), al.Base.StringFixed(2),
			rep.CreditPercent, want.StringFixed(2))
	}
	// The draft may see a minute more than the report a moment earlier.
	if fig == nil || fig.DownMinutes < rep.DownPlatform || fig.Source != sla.SourceName {
		t.Errorf("the draft's SLA figures %+v, want the engine's with %d platform down minutes", fig, rep.DownPlatform)
	}
}
