package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/config"
)

func (a *app) reconcileCmd() *cobra.Command {
	var period string
	var tenants []string
	var all bool
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Check, per institution and day, that records accepted = stored = rated = billed exactly once; exit 1 on any difference",
		Long: `Reconcile a month (DESIGN.md §5): for each institution and calendar day of
window start, the records the collector accepted as new (the store's accepted
ledger), the records stored, and the records the rating engine reads must be
equal, and every stored record must be billed by exactly one issued invoice,
or be pending: received after the last cutoff of the invoices that bill the
month (the next invoice bills it as an adjustment). A difference means a
record lost or counted twice between collector and invoice, or billed twice
or never; the command then exits 1. The collector exports the same figures
as paasmeter_reconcile_* metrics every billing.reconcile_interval.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			env, err := a.openBilling(c.Context())
			if err != nil {
				return err
			}
			defer env.Close()
			p, err := calendar.Parse(period, env.loc)
			if err != nil {
				return err
			}
			if len(tenants) == 0 {
				for _, t := range env.cfg.Tenants {
					tenants = append(tenants, t.ID)
				}
			}
			card, err := ratecard.Load(env.cfg.Billing.RateCard, env.loc)
			if err != nil {
				return err
			}
			days, err := billing.Reconcile(c.Context(), env.metering, env.state, card, tenants, p)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "TENANT\tDAY\tACCEPTED\tSTORED\tRATED\tBILLED\tPENDING\t\t")
			bad := 0
			for _, d := range days {
				mark := "ok"
				if !d.OK() {
					mark, bad = "DIFFERENCE", bad+1
				}
				if all || !d.OK() {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", d.Tenant, d.Day, d.Accepted, d.Stored, d.Rated, d.Billed, d.Pending, mark)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if bad > 0 {
				return fmt.Errorf("%s: %d institution-days of %d differ", p, bad, len(days))
			}
			fmt.Fprintf(a.stdout, "%s: %d institution-days reconciled, no difference\n", p, len(days))
			return nil
		},
	}
	cmd.Flags().StringVar(&period, "period", "", "month to reconcile, e.g. 2026-11")
	cmd.Flags().StringSliceVar(&tenants, "tenant", nil, "only these institutions (repeatable; default all)")
	cmd.Flags().BoolVar(&all, "all", false, "list every day, not only those that differ")
	_ = cmd.MarkFlagRequired("period")
	return cmd
}

// startReconciler reconciles the current month (and the previous one until
// its invoices can be issued) every billing.reconcile_interval and exports
// the figures on reg. It does nothing without a rate card. stop waits for a
// running pass to end, so the store can be closed after it.
func (a *app) startReconciler(ctx context.Context, cfg *config.Config, store billing.Counts, issued billing.Issued, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	if cfg.Billing.RateCard == "" || cfg.Billing.ReconcileInterval <= 0 {
		return func() {}, nil
	}
	loc, err := cfg.Location()
	if err != nil {
		return nil, err
	}
	card, err := ratecard.Load(cfg.Billing.RateCard, loc)
	if err != nil {
		return nil, err
	}
	m, err := billing.NewReconcileMetrics(reg)
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
		t := time.NewTicker(cfg.Billing.ReconcileInterval)
		defer t.Stop()
		for {
			now := a.clock.Now()
			cur := calendar.MonthOf(now, loc)
			periods := []calendar.Month{cur}
			if prev := calendar.MonthOf(cur.Start().Add(-time.Hour), loc); now.Before(prev.End().Add(cfg.Billing.GracePeriod)) {
				periods = append(periods, prev)
			}
			for _, p := range periods {
				days, err := billing.Reconcile(ctx, store, issued, card, tenants, p)
				if err != nil {
					if ctx.Err() == nil {
						log.Error("reconciliation failed", "period", p.String(), "err", err)
					}
					continue
				}
				m.Set(p, days, tenants, now)
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
