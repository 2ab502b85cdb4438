package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/state"
)

// progress reports a run over many institutions on w, at most once a second
// and at the end.
func progress(w io.Writer, verb string) billing.Progress {
	start, last := time.Now(), time.Time{}
	return func(done, total int, tenant string) {
		if now := time.Now(); done == total || now.Sub(last) >= time.Second {
			last = now
			fmt.Fprintf(w, "%s %d/%d institutions (%s), %s\n", verb, done, total, tenant, now.Sub(start).Round(time.Millisecond))
		}
	}
}

func (a *app) invoiceCmd() *cobra.Command {
	return group("invoice", "Draft, issue, list, show, verify, credit and render the monthly invoices",
		`The invoice run (DESIGN.md §5). A month's invoices are drafted from the stored
usage, priced by billing.rate_card; issue freezes them with gap-free numbers once
billing.grace_period has passed after the month; verify re-derives an issued
invoice from its frozen inputs; credit issues a credit note; render writes
issued documents as files in every export format.`,
		a.invoiceDraftCmd(), a.invoiceIssueCmd(), a.invoiceListCmd(), a.invoiceShowCmd(), a.invoiceVerifyCmd(),
		a.invoiceCreditCmd(), a.invoiceRenderCmd())
}

// withBilling runs fn with the billing service of the hub, which it opens
// for fn and closes after it.
func (a *app) withBilling(c *cobra.Command, fn func(svc *billing.Service) error) error {
	return a.withHub(c.Context(), func(h *hub.Hub) error { return fn(h.Billing()) }, hub.Billing)
}

// periodFlags adds the --period and --tenant flags of a run over a month's
// institutions.
func periodFlags(c *cobra.Command, period *string, tenants *[]string) {
	c.Flags().StringVar(period, "period", "", "month to invoice, e.g. 2026-11 (in the platform time zone)")
	c.Flags().StringSliceVar(tenants, "tenant", nil, "only these institutions (repeatable; default all)")
	_ = c.MarkFlagRequired("period")
}

// formatFlag adds the --format flag of the commands that print invoices.
func formatFlag(c *cobra.Command, format *string) {
	c.Flags().StringVar(format, "format", "text", "output: text, json or csv")
}

// actorFlag adds the --actor flag of the commands that issue documents.
func actorFlag(c *cobra.Command, actor *string) {
	c.Flags().StringVar(actor, "actor", "cli", "who issues, for the audit log")
}

func (a *app) invoiceDraftCmd() *cobra.Command {
	var period, format string
	var tenants []string
	cmd := &cobra.Command{
		Use:   "draft",
		Short: "Compute the invoices of a month from the usage stored so far (stores nothing)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withMonth(c.Context(), period, func(h *hub.Hub, p calendar.Month) error {
				invs, err := h.Billing().Draft(c.Context(), p, tenants, progress(a.stderr, "drafted"))
				if err != nil {
					return err
				}
				return a.writeInvoices(invs, format)
			}, hub.Billing)
		},
	}
	periodFlags(cmd, &period, &tenants)
	formatFlag(cmd, &format)
	return cmd
}

func (a *app) invoiceIssueCmd() *cobra.Command {
	var period, actor string
	var tenants []string
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue the invoices of a month: number, freeze and store them",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withMonth(c.Context(), period, func(h *hub.Hub, p calendar.Month) error {
				svc := h.Billing()
				res, err := svc.Issue(c.Context(), p, tenants, actor, progress(a.stderr, "issued"))
				for _, r := range res {
					switch {
					case r.Invoice != nil:
						fmt.Fprintf(a.stdout, "%s\t%s\tissued\tpayable %s %s\n", r.Tenant, r.Invoice.Number, r.Invoice.Totals.Payable.StringFixed(2), r.Invoice.Currency)
					case r.Err != nil:
						fmt.Fprintf(a.stdout, "%s\t-\tFAILED\t%v\n", r.Tenant, r.Err)
					default:
						fmt.Fprintf(a.stdout, "%s\t-\tskipped\t%s\n", r.Tenant, r.Skipped)
					}
				}
				// The outcome goes to the audit log, success or failure, where the
				// collector reads it for PaasmeterInvoiceRunFailed: a run started
				// by a scheduler has nobody watching its exit status.
				if rerr := svc.RecordRun(c.Context(), p, tenants, actor, res, err); rerr != nil {
					if err == nil {
						return fmt.Errorf("the invoices were issued, but the run could not be recorded: %w", rerr)
					}
					// The run's own error stays the one errors.Is finds first.
					return errors.Join(err, rerr)
				}
				return err
			}, hub.Billing)
		},
	}
	periodFlags(cmd, &period, &tenants)
	actorFlag(cmd, &actor)
	return cmd
}

func (a *app) invoiceListCmd() *cobra.Command {
	var tenant, period string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued invoices and credit notes",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withBilling(c, func(svc *billing.Service) error {
				invs, err := svc.List(c.Context(), state.DocumentFilter{Tenant: tenant, Period: period})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NUMBER\tKIND\tTENANT\tPERIOD\tISSUED\tPAYABLE\tREFERS")
				for _, inv := range invs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s %s\t%s\n", inv.Number, inv.Kind, inv.Customer.Tenant, inv.Period, inv.IssueDate,
						inv.Totals.Payable.StringFixed(2), inv.Currency, inv.Refers)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this institution")
	cmd.Flags().StringVar(&period, "period", "", "only this month, e.g. 2026-11")
	return cmd
}

func (a *app) invoiceShowCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "show NUMBER",
		Short: "Show an issued invoice or credit note",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withBilling(c, func(svc *billing.Service) error {
				inv, err := svc.Document(c.Context(), args[0])
				if err != nil {
					return err
				}
				return a.writeInvoices([]*billing.Invoice{inv}, format)
			})
		},
	}
	formatFlag(cmd, &format)
	return cmd
}

func (a *app) invoiceVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify [NUMBER...]",
		Short: "Re-derive issued documents from their frozen inputs and check them bit for bit (all when no number is given)",
		RunE: func(c *cobra.Command, args []string) error {
			return a.withBilling(c, func(svc *billing.Service) error {
				if len(args) == 0 {
					invs, err := svc.List(c.Context(), state.DocumentFilter{})
					if err != nil {
						return err
					}
					for _, inv := range invs {
						args = append(args, inv.Number)
					}
				}
				failed := 0
				for _, n := range args {
					if err := svc.Verify(c.Context(), n); err != nil {
						failed++
						fmt.Fprintf(a.stdout, "%s\tFAILED\t%v\n", n, err)
						continue
					}
					fmt.Fprintf(a.stdout, "%s\tok\n", n)
				}
				if failed > 0 {
					return fmt.Errorf("%d of %d documents failed verification", failed, len(args))
				}
				return nil
			})
		},
	}
}

func (a *app) invoiceCreditCmd() *cobra.Command {
	var reason, amount, actor string
	cmd := &cobra.Command{
		Use:   "credit NUMBER",
		Short: "Issue a credit note against an invoice: all of it, or --amount (tax exclusive)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var amt *decimal.Decimal
			if amount != "" {
				d, err := decimal.NewFromString(amount)
				if err != nil {
					return fmt.Errorf("--amount: %q is not a decimal amount like 12.50", amount)
				}
				amt = &d
			}
			return a.withBilling(c, func(svc *billing.Service) error {
				cn, err := svc.CreditNote(c.Context(), args[0], amt, reason, actor)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s\tcredit note of %s\tpayable %s %s\n", cn.Number, cn.Refers, cn.Totals.Payable.StringFixed(2), cn.Currency)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the invoice is corrected (required; printed on the credit note)")
	cmd.Flags().StringVar(&amount, "amount", "", "tax-exclusive amount to credit; default the whole invoice")
	actorFlag(cmd, &actor)
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func (a *app) invoiceRenderCmd() *cobra.Command {
	var out string
	var formats []string
	var all bool
	cmd := &cobra.Command{
		Use:   "render {NUMBER... | --all} --out DIR",
		Short: "Write issued invoices and credit notes as files, one per format, named NUMBER.FORMAT",
		Long: `Write issued documents into --out (created if missing), one file per format
of --format, named as the collector's downloads are (PM-2026-000001.csv), and
print each file's path. An existing file of the same name is replaced.`,
		RunE: func(c *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return errors.New("name the documents to render, or --all for every issued one")
			}
			for _, f := range formats {
				if !slices.Contains(export.Formats(), f) {
					return fmt.Errorf("--format: %w %q: the formats are %s", export.ErrUnknownFormat, f, strings.Join(export.Formats(), ", "))
				}
			}
			return a.withBilling(c, func(svc *billing.Service) error {
				var invs []*billing.Invoice
				if all {
					var err error
					if invs, err = svc.List(c.Context(), state.DocumentFilter{}); err != nil {
						return err
					}
				}
				for _, n := range args {
					inv, err := svc.Document(c.Context(), n)
					if err != nil {
						return err
					}
					invs = append(invs, inv)
				}
				return a.renderFiles(invs, out, formats)
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the files into (required)")
	cmd.Flags().StringSliceVar(&formats, "format", export.Formats(), "formats to write, comma-separated")
	cmd.Flags().BoolVar(&all, "all", false, "every issued invoice and credit note")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// renderFiles writes invs into dir, created if missing, in each of formats,
// and prints the files' paths.
func (a *app) renderFiles(invs []*billing.Invoice, dir string, formats []string) error {
	// Institutions' billing data: not for every user of the host.
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, inv := range invs {
		for _, f := range formats {
			path, err := renderFile(dir, inv, f)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, path)
		}
	}
	return nil
}

// renderFile writes inv in format into dir under its export file name and
// returns the file's path. The document is rendered whole first, so a
// failed rendering leaves no partial file behind.
func renderFile(dir string, inv *billing.Invoice, format string) (string, error) {
	var b bytes.Buffer
	if err := export.Write(&b, inv, format); err != nil {
		return "", err
	}
	path := filepath.Join(dir, export.FileName(inv, format))
	if err := os.WriteFile(path, b.Bytes(), 0o640); err != nil {
		return "", fmt.Errorf("render %s: %w", inv.Number, err)
	}
	return path, nil
}

// writeInvoices prints invoices in format.
func (a *app) writeInvoices(invs []*billing.Invoice, format string) error {
	switch format {
	case "text":
		for _, inv := range invs {
			writeText(a.stdout, inv)
		}
		return nil
	case "json", "csv":
		for _, inv := range invs {
			if err := export.Write(a.stdout, inv, format); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("--format: %q must be text, json or csv", format)
}

// writeText prints an invoice for a person at a terminal.
func writeText(w io.Writer, inv *billing.Invoice) {
	number := inv.Number
	if number == "" {
		number = "DRAFT"
		if inv.Provisional {
			number += " (provisional: the grace period has not ended)"
		}
	}
	fmt.Fprintf(w, "%s %s — %s (%s), period %s\n", strings.ReplaceAll(inv.Kind, "_", " "), number, inv.Customer.Name, inv.Customer.Tenant, inv.Period)
	if inv.Refers != "" {
		fmt.Fprintf(w, "corrects %s: %s\n", inv.Refers, inv.Reason)
	}
	if inv.Closed != "" {
		fmt.Fprintf(w, "%s is closed for %s, %s: this draft recomputes it from every record received by now, it is not what was issued\n",
			inv.Period, inv.Customer.Tenant, inv.Closed)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "meter\tclass\ttier\trate\tquantity\tunit\tunit price\tamount\tadjusts\t")
	for _, l := range inv.Lines {
		writeLine(tw, l)
	}
	for _, al := range inv.Allowances {
		fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t%s\t\t\n", al.Reason, al.Amount.StringFixed(2))
	}
	t := inv.Totals
	for _, r := range [][2]string{{"lines", t.Lines.StringFixed(2)}, {"allowances", t.Allowances.StringFixed(2)},
		{"taxable", t.TaxExclusive.StringFixed(2)}, {"VAT " + vatText(inv), t.VAT.StringFixed(2)}, {"payable " + inv.Currency, t.Payable.StringFixed(2)}} {
		fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t%s\t\t\n", r[0], r[1])
	}
	if len(inv.Pending) > 0 {
		fmt.Fprintf(tw, "received since %s closed, adjustments on the next invoice:\t\t\t\t\t\t\t\t\t\n", inv.Period)
		for _, l := range inv.Pending {
			writeLine(tw, l)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// writeLine prints an invoice line as a row of writeText's table.
func writeLine(w io.Writer, l billing.Line) {
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", l.Meter, l.Class, l.TierText(), l.VersionText(),
		l.Quantity.StringFixed(6), l.Unit, l.UnitPrice, l.Amount.StringFixed(2), l.Adjusts)
}

func vatText(inv *billing.Invoice) string {
	if len(inv.VAT) == 0 {
		return ""
	}
	v := inv.VAT[0]
	if v.Category == billing.VATExempt {
		return "exempt"
	}
	return v.Rate.String() + " %"
}
