package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/hub"
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
			return a.withMonth(c.Context(), period, func(h *hub.Hub, p calendar.Month) error {
				if len(tenants) == 0 {
					tenants = h.Tenants()
				}
				days, err := billing.Reconcile(c.Context(), h.MeteringStore(), h.StateStore(), h.RateCard(), tenants, p)
				if err != nil {
					return err
				}
				return a.writeReconciliation(p, days, all)
			}, hub.RateCard, hub.MeteringStore, hub.StateStore)
		},
	}
	cmd.Flags().StringVar(&period, "period", "", "month to reconcile, e.g. 2026-11")
	cmd.Flags().StringSliceVar(&tenants, "tenant", nil, "only these institutions (repeatable; default all)")
	cmd.Flags().BoolVar(&all, "all", false, "list every day, not only those that differ")
	_ = cmd.MarkFlagRequired("period")
	return cmd
}

// writeReconciliation prints the institution-days of p that differ (all of
// them with all), and fails if any does.
func (a *app) writeReconciliation(p calendar.Month, days []billing.DayCount, all bool) error {
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
}
