package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/sla"
)

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
			return a.withMonth(c.Context(), month, func(h *hub.Hub, p calendar.Month) error {
				if len(tenants) == 0 {
					tenants = h.Tenants()
				}
				var reps []*sla.Report
				for _, t := range tenants {
					if !h.Config().Tenants.Has(t) {
						return fmt.Errorf("--tenant: %q is not a configured institution", t)
					}
					r, err := h.SLACalculator().Report(c.Context(), t, p)
					if err != nil {
						return err
					}
					reps = append(reps, r)
				}
				return a.writeSLAReports(reps, format)
			}, hub.SLACalculator)
		},
	}
	report.Flags().StringVar(&month, "month", "", "month, e.g. 2026-11 (in the platform time zone)")
	report.Flags().StringSliceVar(&tenants, "tenant", nil, "only these institutions (repeatable; default all)")
	report.Flags().StringVar(&format, "format", "text", "output: text or json")
	_ = report.MarkFlagRequired("month")
	cmd.AddCommand(report)
	return cmd
}

// writeSLAReports prints reps as a table or as JSON.
func (a *app) writeSLAReports(reps []*sla.Report, format string) error {
	switch format {
	case "json":
		return a.writeJSON(reps)
	case "text":
		writeSLAText(a.stdout, reps)
		return nil
	}
	return fmt.Errorf("--format: %q must be text or json", format)
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
