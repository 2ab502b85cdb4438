package billing_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/ruletext"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/usage"
)

// The pricing rules of DESIGN.md §5 are data: testdata/rules/*.txt hold
// cases, each a rate card, an institution's usage records and the invoice
// lines and totals they must give, so a rule reads as the sentence that
// names it and its numbers, worked out by hand in a comment. A file is
// lines of words; # starts a comment line. Times are in Europe/Brussels,
// written 2026-11-02 10:00. The lines before the first case set what every
// case of the file starts with; a case's own card, cardfile or rate lines
// replace the file's rate card, its other lines add to or change the file's.
//
//	card v1 from 2026-01-01       starts a rate-card version, effective at
//	                              00:00 of that day (or at a date and time)
//	rate cpu prod used 0.0400 [min-run 60s]
//	                              a rate of the last version: meter, class,
//	rate net_tx_bytes prod tiers 100:0.00 0.0100
//	                              basis (for cpu and memory), then a flat
//	                              price or graduated bands up-to:price, the
//	                              last one's price alone
//	cardfile deploy.yaml          the rate card is that file of testdata/rules
//	vat 21 | vat exempt           the institution's VAT (default 21)
//	availability 99.5             its production availability in every month
//	                              (none: no SLA figures)
//	record caami portal web prod cpu_ns 3600000000000 2026-11-02 10:00 1h [run r1] [received 2026-12-20 10:00]
//	                              a usage record: tenant, project, app,
//	                              environment, meter, quantity in its base
//	                              unit, window start and length; its run
//	                              (default r-<app>-<env>, the container
//	                              c-<run>) and when the collector received it
//	                              (default: its window's end)
//	issue 2026-11 at 2026-12-04 01:00
//	                              issues that month for every institution
//	draft caami 2026-12 at 2027-01-04 00:00
//	                              drafts that institution's month: what the
//	                              lines below must match
//	line cpu prod 1 vCPU-hour 10.000000 0.0400 0.40 [version v1] [adjusts 2026-11]
//	                              the draft's lines, in order: meter, class,
//	                              band, unit, quantity, unit price, amount
//	allowance 10 base 40.00 amount -4.00
//	                              the SLA credit: percent, base, amount
//	totals lines 40.00 allowances -4.00 vat 7.56 payable 43.56
//
// A case without an allowance line expects none. Every institution of a
// case is invoiced from the first month an issue or draft line names.

// ruleCase is one case of a billing rule file.
type ruleCase struct {
	name, pos string
	// card is the rate card as the YAML ratecard.Parse reads, or cardFile a
	// file of testdata/rules holding one.
	card     []map[string]any
	cardFile string
	vat      billing.VAT
	// availability is nil when the case has no SLA figures.
	availability *decimal.Decimal
	records      []usage.Record
	issues       []monthAt
	draft        *monthAt
	draftTenant  string
	lines        []billing.Line
	allowances   []billing.Allowance
	totals       *billing.Totals
}

// monthAt is a month issued or drafted, and the clock's time when it is.
type monthAt struct {
	month string
	at    time.Time
}

// billLine is one line of a billing rule file being read.
type billLine struct{ ruletext.Line }

// is tells whether w is written in layout (time.DateOnly, "15:04",
// "2006-01").
func is(layout, w string) bool {
	_, err := time.Parse(layout, w)
	return err == nil
}

// instant takes a date and a time of day in Brussels; the time may be
// left out when optional.
func (l *billLine) instant(what string, optionalTime bool) (time.Time, error) {
	d, err := l.Word(what)
	if err != nil {
		return time.Time{}, err
	}
	if !is(time.DateOnly, d) {
		return time.Time{}, l.Errorf("%s: %q is not a date like 2026-11-02", what, d)
	}
	hm := "00:00"
	if len(l.Words) > 0 && is("15:04", l.Words[0]) {
		hm, _ = l.Word(what)
	} else if !optionalTime {
		return time.Time{}, l.Errorf("%s: a date needs a time of day like 10:00", what)
	}
	t, err := time.ParseInLocation("2006-01-02 15:04", d+" "+hm, billingtest.Brussels())
	if err != nil {
		return time.Time{}, l.Errorf("%s: %v", what, err)
	}
	return t, nil
}

func (l *billLine) decimal(what string) (decimal.Decimal, error) {
	w, err := l.Word(what)
	if err != nil {
		return decimal.Decimal{}, err
	}
	d, err := decimal.NewFromString(w)
	if err != nil {
		return decimal.Decimal{}, l.Errorf("%s: %q is not a decimal number", what, w)
	}
	return d, nil
}

func (l *billLine) month(what string) (string, error) {
	w, err := l.Word(what)
	if err == nil && !is("2006-01", w) {
		err = l.Errorf("%s: %q is not a month like 2026-11", what, w)
	}
	return w, err
}

// monthAt takes "MONTH at DATE TIME".
func (l *billLine) monthAt() (monthAt, error) {
	m, err := l.month("month")
	if err != nil {
		return monthAt{}, err
	}
	if err := l.Keyword("at"); err != nil {
		return monthAt{}, err
	}
	at, err := l.instant("the clock's time", false)
	return monthAt{month: m, at: at}, err
}

// options reads trailing "key value" pairs of the keys given.
func (l *billLine) options(keys ...string) (map[string]string, error) {
	out := map[string]string{}
	for len(l.Words) > 0 {
		k, _ := l.Word("")
		if !slices.Contains(keys, k) {
			return nil, l.Errorf("unexpected %q: the options here are %s", k, strings.Join(keys, ", "))
		}
		v, err := l.Word(k + "'s value")
		if err != nil {
			return nil, err
		}
		if k == "received" && len(l.Words) > 0 && is("15:04", l.Words[0]) {
			hm, _ := l.Word("")
			v += " " + hm
		}
		out[k] = v
	}
	return out, nil
}

// rate reads a rate line into the YAML mapping the rate card's parser reads.
func (l *billLine) rate() (map[string]any, error) {
	m, err := l.Word("meter")
	if err != nil {
		return nil, err
	}
	meter := ratecard.Meter(m)
	if !meter.Valid() {
		return nil, l.Errorf("%q is not a rate-card meter", m)
	}
	class, err := l.Word("class")
	if err != nil {
		return nil, err
	}
	r := map[string]any{"meter": m, "class": class, "unit": string(meter.Unit())}
	if meter.HasBasis() {
		if r["basis"], err = l.Word("basis"); err != nil {
			return nil, err
		}
	}
	price, err := l.Word("price or tiers")
	if err != nil {
		return nil, err
	}
	if price != "tiers" {
		r["price"] = price
	} else {
		var tiers []map[string]any
		for len(l.Words) > 0 && l.Words[0] != "min-run" {
			w, _ := l.Word("")
			upTo, p, bounded := strings.Cut(w, ":")
			if !bounded {
				tiers = append(tiers, map[string]any{"price": upTo})
				continue
			}
			tiers = append(tiers, map[string]any{"up_to": upTo, "price": p})
		}
		if len(tiers) == 0 {
			return nil, l.Errorf("tiers: missing bands like 100:0.00 0.0100")
		}
		r["tiers"] = tiers
	}
	if len(l.Words) > 0 {
		if err := l.Keyword("min-run"); err != nil {
			return nil, err
		}
		if r["min_run_duration"], err = l.Word("min-run's duration"); err != nil {
			return nil, err
		}
	}
	return r, l.End()
}

// record reads a record line.
func (l *billLine) record() (usage.Record, error) {
	var f [6]string
	for i, what := range []string{"tenant", "project", "app", "environment", "meter", "quantity"} {
		w, err := l.Word(what)
		if err != nil {
			return usage.Record{}, err
		}
		f[i] = w
	}
	q, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil || q < 0 {
		return usage.Record{}, l.Errorf("quantity: %q is not a whole number", f[5])
	}
	start, err := l.instant("window start", false)
	if err != nil {
		return usage.Record{}, err
	}
	w, err := l.Word("window length")
	if err != nil {
		return usage.Record{}, err
	}
	d, err := time.ParseDuration(w)
	if err != nil || d <= 0 {
		return usage.Record{}, l.Errorf("window length: %q is not a duration like 1h", w)
	}
	opts, err := l.options("run", "received")
	if err != nil {
		return usage.Record{}, err
	}
	run := opts["run"]
	if run == "" {
		run = "r-" + f[2] + "-" + f[3]
	}
	r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: f[0], Project: f[1], App: f[2], Environment: usage.Environment(f[3]),
		Node: "node-1", Meter: usage.Meter(f[4]), Quantity: q, WindowStart: start.UTC(), WindowEnd: start.Add(d).UTC()}
	if r.Meter == usage.MeterStorageByteSeconds {
		r.Volume = "v-" + f[2]
	} else {
		r.ContainerID, r.RunID = "c-"+run, run
	}
	r.SetID()
	if ps := usage.Validate(&r, 0, r.WindowEnd, usage.DefaultLimits()); len(ps) > 0 {
		return usage.Record{}, l.Errorf("record: %s: %s", ps[0].Field, ps[0].Reason)
	}
	r.ReceivedAt = r.WindowEnd
	if v, ok := opts["received"]; ok {
		rl := &billLine{ruletext.Line{Pos: l.Pos, Words: strings.Fields(v)}}
		at, err := rl.instant("received", true)
		if err != nil {
			return usage.Record{}, err
		}
		r.ReceivedAt = at.UTC()
	}
	return r, nil
}

// line reads an expected invoice line.
func (l *billLine) line() (billing.Line, error) {
	var ln billing.Line
	words := make([]string, 4)
	for i, what := range []string{"meter", "class", "band", "unit"} {
		w, err := l.Word(what)
		if err != nil {
			return ln, err
		}
		words[i] = w
	}
	ln.Meter, ln.Class, ln.Unit = ratecard.Meter(words[0]), ratecard.Class(words[1]), ratecard.Unit(words[3])
	if _, err := fmt.Sscan(words[2], &ln.Band); err != nil || ln.Band < 1 {
		return ln, l.Errorf("band: %q is not a band number from 1", words[2])
	}
	q, err := l.decimal("quantity")
	if err != nil {
		return ln, err
	}
	p, err := l.decimal("unit price")
	if err != nil {
		return ln, err
	}
	a, err := l.decimal("amount")
	if err != nil {
		return ln, err
	}
	ln.Quantity, ln.UnitPrice, ln.Amount = billing.Quantity{Decimal: q}, billing.Price{Decimal: p}, billing.Money{Decimal: a}
	opts, err := l.options("version", "adjusts")
	ln.Version, ln.Adjusts = opts["version"], opts["adjusts"]
	return ln, err
}

// pairs reads "key decimal" pairs, every key of keys once, in that order.
func (l *billLine) pairs(keys ...string) ([]decimal.Decimal, error) {
	out := make([]decimal.Decimal, len(keys))
	for i, k := range keys {
		if err := l.Keyword(k); err != nil {
			return nil, err
		}
		d, err := l.decimal(k)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, l.End()
}

// parseRuleCases reads the cases of a billing rule file; name is how errors
// name the file.
func parseRuleCases(name string, r io.Reader) ([]*ruleCase, error) {
	var (
		cases  []*ruleCase
		header = ruleCase{vat: billing.VAT{Category: billing.VATStandard, Rate: decimal.NewFromInt(21)}}
		c      = &header
		// ownCard is whether c has begun a rate card of its own.
		ownCard bool
	)
	err := ruletext.Read(name, r, func(rl *ruletext.Line) error {
		l := &billLine{*rl}
		verb, _ := l.Word("")
		if c != &header && c.draft != nil && !slices.Contains([]string{"line", "allowance", "totals", "case"}, verb) {
			return l.Errorf("%q after the draft line: only line, allowance and totals lines follow it", verb)
		}
		if (verb == "card" || verb == "cardfile" || verb == "rate") && c != &header && !ownCard {
			c.card, c.cardFile, ownCard = nil, "", true
		}
		var err error
		switch verb {
		case "case":
			if c != &header {
				if err := c.finish(); err != nil {
					return err
				}
			}
			if len(l.Words) == 0 {
				return l.Errorf("a case needs a sentence naming its rule")
			}
			cc := header
			cc.card = slices.Clone(header.card)
			c, ownCard = &cc, false
			cases = append(cases, c)
			c.name, c.pos, l.Words = strings.Join(l.Words, " "), l.Pos, nil
		case "card":
			var v string
			if v, err = l.Word("version name"); err != nil {
				break
			}
			if err = l.Keyword("from"); err != nil {
				break
			}
			var eff time.Time
			if eff, err = l.instant("effective", true); err != nil {
				break
			}
			c.card = append(c.card, map[string]any{"version": v, "effective": eff.Format(time.RFC3339)})
			c.cardFile = ""
		case "cardfile":
			c.cardFile, err = l.Word("file name")
			c.card = nil
		case "rate":
			if len(c.card) == 0 {
				return l.Errorf("a rate line needs a card line before it")
			}
			var r map[string]any
			if r, err = l.rate(); err == nil {
				v := c.card[len(c.card)-1]
				rates, _ := v["rates"].([]map[string]any)
				v["rates"] = append(slices.Clone(rates), r)
			}
		case "vat":
			var w string
			if w, err = l.Word("rate or exempt"); err != nil {
				break
			}
			if w == "exempt" {
				c.vat = billing.VAT{Category: billing.VATExempt, Rate: decimal.Zero, ExemptionReason: "Exempt public-sector service", ExemptionCode: "VATEX-EU-132"}
				break
			}
			l.Words = append([]string{w}, l.Words...)
			var rate decimal.Decimal
			if rate, err = l.decimal("VAT rate"); err == nil {
				c.vat = billing.VAT{Category: billing.VATStandard, Rate: rate}
			}
		case "availability":
			var a decimal.Decimal
			if a, err = l.decimal("availability"); err == nil {
				c.availability = &a
			}
		case "record":
			var rec usage.Record
			if rec, err = l.record(); err == nil {
				c.records = append(c.records, rec)
			}
		case "issue":
			var m monthAt
			if m, err = l.monthAt(); err == nil {
				c.issues = append(c.issues, m)
			}
		case "draft":
			if c == &header {
				return l.Errorf("a draft line belongs to a case")
			}
			if c.draftTenant, err = l.Word("tenant"); err != nil {
				break
			}
			var m monthAt
			if m, err = l.monthAt(); err == nil {
				c.draft = &m
			}
		case "line", "allowance", "totals":
			if c.draft == nil {
				return l.Errorf("a %s line follows the case's draft line", verb)
			}
			err = c.expect(verb, l)
		default:
			return l.Errorf("%q is not a line of a billing rule file (case, card, cardfile, rate, vat, availability, record, issue, draft, line, allowance, totals)", verb)
		}
		if err == nil {
			err = l.End()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c != &header {
		if err := c.finish(); err != nil {
			return nil, err
		}
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%s: no case", name)
	}
	return cases, nil
}

// expect reads a line, allowance or totals line of c's draft.
func (c *ruleCase) expect(verb string, l *billLine) error {
	switch verb {
	case "line":
		ln, err := l.line()
		c.lines = append(c.lines, ln)
		return err
	case "allowance":
		pct, err := l.decimal("percent")
		if err != nil {
			return err
		}
		d, err := l.pairs("base", "amount")
		if err != nil {
			return err
		}
		c.allowances = append(c.allowances, billing.Allowance{Percent: pct, Base: billing.Money{Decimal: d[0]}, Amount: billing.Money{Decimal: d[1]}})
	case "totals":
		if c.totals != nil {
			return l.Errorf("a second totals line")
		}
		d, err := l.pairs("lines", "allowances", "vat", "payable")
		if err != nil {
			return err
		}
		c.totals = &billing.Totals{Lines: billing.Money{Decimal: d[0]}, Allowances: billing.Money{Decimal: d[1]},
			TaxExclusive: billing.Money{Decimal: d[0].Add(d[1])}, VAT: billing.Money{Decimal: d[2]}, Payable: billing.Money{Decimal: d[3]}}
	}
	return nil
}

// finish checks that c is complete.
func (c *ruleCase) finish() error {
	switch {
	case c.draft == nil:
		return fmt.Errorf("%s: case %q has no draft line", c.pos, c.name)
	case c.totals == nil:
		return fmt.Errorf("%s: case %q has no totals line", c.pos, c.name)
	case len(c.card) == 0 && c.cardFile == "":
		return fmt.Errorf("%s: case %q has no rate card", c.pos, c.name)
	}
	return nil
}

// rateCard parses c's rate card with the real parser.
func (c *ruleCase) rateCard(dir string) (*ratecard.Card, error) {
	if c.cardFile != "" {
		return ratecard.Load(filepath.Join(dir, c.cardFile), billingtest.Brussels())
	}
	data, err := yaml.Marshal(map[string]any{"currency": "EUR", "versions": c.card})
	if err != nil {
		return nil, err
	}
	return ratecard.Parse(data, c.pos, billingtest.Brussels())
}

// caseSLA serves one availability for every tenant and month.
type caseSLA struct{ availability *decimal.Decimal }

func (s caseSLA) SLA(context.Context, string, calendar.Month) (credit.Figures, bool, error) {
	if s.availability == nil {
		return credit.Figures{}, false, nil
	}
	return credit.Figures{Availability: *s.availability, Source: "rules"}, true, nil
}

// run drafts c through the real service over embedded stores and returns
// the draft.
func (c *ruleCase) run(t *testing.T, dir string) *billing.Invoice {
	t.Helper()
	ctx := context.Background()
	card, err := c.rateCard(dir)
	if err != nil {
		t.Fatalf("%s: rate card: %v", c.pos, err)
	}
	store, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if len(c.records) > 0 {
		if _, err := store.AppendUsage(ctx, c.records); err != nil {
			t.Fatalf("%s: store the records: %v", c.pos, err)
		}
	}
	first := c.draft.month
	for _, is := range c.issues {
		first = min(first, is.month)
	}
	cfg := billing.DefaultConfig()
	cfg.Location, cfg.Seller = billingtest.Brussels(), billingtest.Seller()
	model := billingtest.Customers()[0]
	for _, r := range c.records {
		if !slices.ContainsFunc(cfg.Customers, func(cu billing.Customer) bool { return cu.Tenant == r.Tenant }) {
			cu := model
			cu.Tenant, cu.VAT, cu.Start = r.Tenant, c.vat, first
			cfg.Customers = append(cfg.Customers, cu)
		}
	}
	clk := clock.NewManual(c.draft.at)
	svc, err := billing.New(billing.Options{Config: cfg, Card: card, Usage: store, SLA: caseSLA{c.availability},
		State: openEmbeddedState(t, t.TempDir()), Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("%s: %v", c.pos, err)
	}
	for _, is := range c.issues {
		clk.Set(is.at)
		m, err := calendar.Parse(is.month, billingtest.Brussels())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Issue(ctx, m, nil, "rules", nil); err != nil {
			t.Fatalf("%s: issue %s: %v", c.pos, is.month, err)
		}
	}
	clk.Set(c.draft.at)
	m, err := calendar.Parse(c.draft.month, billingtest.Brussels())
	if err != nil {
		t.Fatal(err)
	}
	invs, err := svc.Draft(ctx, m, []string{c.draftTenant}, nil)
	if err != nil {
		t.Fatalf("%s: draft: %v", c.pos, err)
	}
	return invs[0]
}

// ruleLineText writes a line as a rule file's line line does.
func ruleLineText(l billing.Line) string {
	s := fmt.Sprintf("%s %s %d %s %s %s %s", l.Meter, l.Class, l.Band, l.Unit, l.Quantity.StringFixed(6), l.UnitPrice.Decimal.String(), l.Amount.StringFixed(2))
	if l.Version != "" {
		s += " version " + l.Version
	}
	if l.Adjusts != "" {
		s += " adjusts " + l.Adjusts
	}
	return s
}

func allowanceText(a billing.Allowance) string {
	return fmt.Sprintf("%s base %s amount %s", a.Percent, a.Base.StringFixed(2), a.Amount.StringFixed(2))
}

func totalsText(t billing.Totals) string {
	return fmt.Sprintf("lines %s allowances %s tax-exclusive %s vat %s payable %s", t.Lines.StringFixed(2), t.Allowances.StringFixed(2),
		t.TaxExclusive.StringFixed(2), t.VAT.StringFixed(2), t.Payable.StringFixed(2))
}

// texts writes each of xs with text.
func texts[T any](xs []T, text func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = text(x)
	}
	return out
}

// TestBillingRules runs every case of testdata/rules through the service's
// Draft and compares the draft's lines, allowances and totals.
func TestBillingRules(t *testing.T) {
	dir := filepath.Join("testdata", "rules")
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in %s: %v", dir, err)
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		cases, err := parseRuleCases(file, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					inv := c.run(t, dir)
					compareTexts(t, c.pos, "lines", texts(c.lines, ruleLineText), texts(inv.Lines, ruleLineText))
					compareTexts(t, c.pos, "allowances", texts(c.allowances, allowanceText), texts(inv.Allowances, allowanceText))
					compareTexts(t, c.pos, "totals", []string{totalsText(*c.totals)}, []string{totalsText(inv.Totals)})
					// Every draft shares out by project and environment, to
					// the cent (the cost-so-far API's figures).
					shares, err := billing.Shares(inv)
					if err != nil {
						t.Fatalf("%s: Shares: %v", c.pos, err)
					}
					var lines, credit, vat decimal.Decimal
					for _, s := range shares {
						lines, credit, vat = lines.Add(s.Lines.Decimal), credit.Add(s.Credit.Decimal), vat.Add(s.VAT.Decimal)
					}
					if !lines.Equal(inv.Totals.Lines.Decimal) || !credit.Equal(inv.Totals.Allowances.Decimal) || !vat.Equal(inv.Totals.VAT.Decimal) {
						t.Errorf("%s: shares add up to lines %s, credit %s, VAT %s; totals %s", c.pos, lines, credit, vat, totalsText(inv.Totals))
					}
				})
			}
		})
	}
}

// compareTexts fails with both lists when got is not want.
func compareTexts(t *testing.T, pos, what string, want, got []string) {
	t.Helper()
	if !slices.Equal(want, got) {
		t.Errorf("%s: the draft's %s are\n\t%s\nwant\n\t%s", pos, what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestBillingRuleFileErrors checks that a mistake in a rule file is
// reported at its file and line.
func TestBillingRuleFileErrors(t *testing.T) {
	const head = "card v1 from 2026-01-01\nrate cpu prod used 0.04\n"
	for _, tc := range []struct{ name, text, want string }{
		{"an unknown verb", head + "case x\nbill it\n", "r.txt:4: \"bill\" is not a line"},
		{"a rate before a card", "rate cpu prod used 0.04\n", "r.txt:1: a rate line needs a card line"},
		{"an unknown meter", "card v1 from 2026-01-01\nrate gpu prod 1\n", "r.txt:2: \"gpu\" is not a rate-card meter"},
		{"a record without a time", head + "case x\nrecord a p w prod cpu_ns 1 2026-11-02 1h\n", "r.txt:4: window start: a date needs a time of day"},
		{"a quantity that is no number", head + "case x\nrecord a p w prod cpu_ns 1.5 2026-11-02 10:00 1h\n", "r.txt:4: quantity: \"1.5\""},
		{"a line before the draft", head + "case x\nline cpu prod 1 vCPU-hour 1 0.04 0.04\n", "r.txt:4: a line line follows the case's draft line"},
		{"a record after the draft", head + "case x\ndraft a 2026-11 at 2026-12-04 00:00\nrecord a p w prod cpu_ns 1 2026-11-02 10:00 1h\n", "r.txt:5: \"record\" after the draft line"},
		{"a case without totals", head + "case x\ndraft a 2026-11 at 2026-12-04 00:00\n", "r.txt:3: case \"x\" has no totals line"},
		{"a bad totals line", head + "case x\ndraft a 2026-11 at 2026-12-04 00:00\ntotals lines 1 vat 0\n", "r.txt:5: \"vat\" where \"allowances\" belongs"},
		{"words left over", head + "case x\navailability 99.5 percent\n", "r.txt:4: unexpected \"percent\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRuleCases("r.txt", strings.NewReader(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
