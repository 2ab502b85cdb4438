package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/billing/slafile"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/state"
	stateopen "github.com/paasmeter/paasmeter/state/open"
)

// openStateStore opens the state store that cfg names: PostgreSQL for a
// store.state_dsn, else the embedded store in store.data_dir.
func openStateStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (state.Store, error) {
	st, err := stateopen.Open(ctx, cfg.Store.StateDSN, cfg.Store.DataDir)
	if err != nil {
		return nil, fmt.Errorf("store.state_dsn: %w", err)
	}
	kind := "embedded"
	if cfg.Store.StateDSN != "" {
		kind = "postgres"
	}
	log.Info("state store opened", "kind", kind)
	return st, nil
}

// billingEnv is what the invoice and reconcile commands work with.
type billingEnv struct {
	cfg      *config.Config
	svc      *billing.Service
	metering metering.Store
	state    state.Store
	loc      *time.Location
	log      *slog.Logger
}

func (e *billingEnv) Close() {
	e.metering.Close()
	e.state.Close()
}

func (a *app) openBilling(ctx context.Context) (*billingEnv, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	log := a.logger(cfg)
	o, err := a.billingOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	ms, err := openMeteringStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	ss, err := openStateStore(ctx, cfg, log)
	if err != nil {
		ms.Close()
		return nil, err
	}
	svc, err := a.newBillingService(cfg, o, ms, ss, log)
	if err != nil {
		ms.Close()
		ss.Close()
		return nil, err
	}
	return &billingEnv{cfg: cfg, svc: svc, metering: ms, state: ss, loc: o.Config.Location, log: log}, nil
}

// billingOptions returns the billing service's options that cfg gives, all
// but its stores: the invoice commands and the collector check them before
// opening any store, so that a configuration error is reported as such.
func (a *app) billingOptions(cfg *config.Config, log *slog.Logger) (billing.Options, error) {
	bc, err := cfg.BillingConfig()
	if err != nil {
		return billing.Options{}, err
	}
	if cfg.Billing.RateCard == "" {
		return billing.Options{}, errors.New("billing.rate_card: no rate card configured (PAASMETER_RATE_CARD, or see deploy/examples/ratecard.yaml)")
	}
	card, err := ratecard.Load(cfg.Billing.RateCard, bc.Location)
	if err != nil {
		return billing.Options{}, err
	}
	o := billing.Options{Config: bc, Card: card, Clock: a.clock, Logger: log}
	// A file of figures overrides the SLA engine, which newBillingService
	// builds over the stores.
	if cfg.Billing.SLAFile != "" {
		f, err := slafile.Load(cfg.Billing.SLAFile)
		if err != nil {
			return billing.Options{}, err
		}
		o.SLA = f
	}
	return o, nil
}

// newBillingService builds the billing service of o over the metering store
// ms and the state store ss; without an SLA file, the SLA engine over the
// stored events and the declared maintenance windows gives the credits.
func (a *app) newBillingService(cfg *config.Config, o billing.Options, ms metering.Store, ss state.Store, log *slog.Logger) (*billing.Service, error) {
	if o.SLA == nil {
		windows, err := a.newMaintenanceService(cfg, ss, log)
		if err != nil {
			return nil, err
		}
		eng, err := a.newSLAEngine(cfg, ms, windows)
		if err != nil {
			return nil, err
		}
		o.SLA = eng
	}
	o.Usage, o.State = ms, ss
	return billing.New(o)
}

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
	cmd := &cobra.Command{
		Use:   "invoice",
		Short: "Draft, issue, list, show, verify, credit and render the monthly invoices",
		Long: `The invoice run (DESIGN.md §5). A month's invoices are drafted from the stored
usage, priced by billing.rate_card; issue freezes them with gap-free numbers once
billing.grace_period has passed after the month; verify re-derives an issued
invoice from its frozen inputs; credit issues a credit note; render writes
issued documents as files in every export format.`,
	}
	var period, format string
	var tenants []string
	periodFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&period, "period", "", "month to invoice, e.g. 2026-11 (in the platform time zone)")
		c.Flags().StringSliceVar(&tenants, "tenant", nil, "only these institutions (repeatable; default all)")
		_ = c.MarkFlagRequired("period")
	}
	formatFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&format, "format", "text", "output: text, json or csv")
	}
	draft := &cobra.Command{
		Use:   "draft",
		Short: "Compute the invoices of a month from the usage stored so far (stores nothing)",
		Args:  cobra.NoArgs,
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
			invs, err := env.svc.Draft(c.Context(), p, tenants, progress(a.stderr, "drafted"))
			if err != nil {
				return err
			}
			return a.writeInvoices(invs, format)
		},
	}
	periodFlag(draft)
	formatFlag(draft)

	var actor string
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue the invoices of a month: number, freeze and store them",
		Args:  cobra.NoArgs,
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
			res, err := env.svc.Issue(c.Context(), p, tenants, actor, progress(a.stderr, "issued"))
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
			if rerr := env.svc.RecordRun(c.Context(), p, tenants, actor, res, err); rerr != nil {
				if err == nil {
					return fmt.Errorf("the invoices were issued, but the run could not be recorded: %w", rerr)
				}
				// The run's own error stays the one errors.Is finds first.
				return errors.Join(err, rerr)
			}
			return err
		},
	}
	periodFlag(issue)
	issue.Flags().StringVar(&actor, "actor", "cli", "who issues, for the audit log")

	var listTenant, listPeriod string
	list := &cobra.Command{
		Use:   "list",
		Short: "List issued invoices and credit notes",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			env, err := a.openBilling(c.Context())
			if err != nil {
				return err
			}
			defer env.Close()
			invs, err := env.svc.List(c.Context(), state.DocumentFilter{Tenant: listTenant, Period: listPeriod})
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
		},
	}
	list.Flags().StringVar(&listTenant, "tenant", "", "only this institution")
	list.Flags().StringVar(&listPeriod, "period", "", "only this month, e.g. 2026-11")

	show := &cobra.Command{
		Use:   "show NUMBER",
		Short: "Show an issued invoice or credit note",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			env, err := a.openBilling(c.Context())
			if err != nil {
				return err
			}
			defer env.Close()
			inv, err := env.svc.Document(c.Context(), args[0])
			if err != nil {
				return err
			}
			return a.writeInvoices([]*billing.Invoice{inv}, format)
		},
	}
	formatFlag(show)

	verify := &cobra.Command{
		Use:   "verify [NUMBER...]",
		Short: "Re-derive issued documents from their frozen inputs and check them bit for bit (all when no number is given)",
		RunE: func(c *cobra.Command, args []string) error {
			env, err := a.openBilling(c.Context())
			if err != nil {
				return err
			}
			defer env.Close()
			if len(args) == 0 {
				invs, err := env.svc.List(c.Context(), state.DocumentFilter{})
				if err != nil {
					return err
				}
				for _, inv := range invs {
					args = append(args, inv.Number)
				}
			}
			failed := 0
			for _, n := range args {
				if err := env.svc.Verify(c.Context(), n); err != nil {
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
		},
	}

	var reason, amount string
	credit := &cobra.Command{
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
			env, err := a.openBilling(c.Context())
			if err != nil {
				return err
			}
			defer env.Close()
			cn, err := env.svc.CreditNote(c.Context(), args[0], amt, reason, actor)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\tcredit note of %s\tpayable %s %s\n", cn.Number, cn.Refers, cn.Totals.Payable.StringFixed(2), cn.Currency)
			return nil
		},
	}
	credit.Flags().StringVar(&reason, "reason", "", "why the invoice is corrected (required; printed on the credit note)")
	credit.Flags().StringVar(&amount, "amount", "", "tax-exclusive amount to credit; default the whole invoice")
	credit.Flags().StringVar(&actor, "actor", "cli", "who issues, for the audit log")
	_ = credit.MarkFlagRequired("reason")

	var out string
	var formats []string
	var all bool
	render := &cobra.Command{
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
			env, err := a.openBilling(c.Context())
			if err != nil {
				return err
			}
			defer env.Close()
			var invs []*billing.Invoice
			if all {
				if invs, err = env.svc.List(c.Context(), state.DocumentFilter{}); err != nil {
					return err
				}
			}
			for _, n := range args {
				inv, err := env.svc.Document(c.Context(), n)
				if err != nil {
					return err
				}
				invs = append(invs, inv)
			}
			// Institutions' billing data: not for every user of the host.
			if err := os.MkdirAll(out, 0o750); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			for _, inv := range invs {
				for _, f := range formats {
					path, err := renderFile(out, inv, f)
					if err != nil {
						return err
					}
					fmt.Fprintln(a.stdout, path)
				}
			}
			return nil
		},
	}
	render.Flags().StringVar(&out, "out", "", "directory to write the files into (required)")
	render.Flags().StringSliceVar(&formats, "format", export.Formats(), "formats to write, comma-separated")
	render.Flags().BoolVar(&all, "all", false, "every issued invoice and credit note")
	_ = render.MarkFlagRequired("out")

	cmd.AddCommand(draft, issue, list, show, verify, credit, render)
	return cmd
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
