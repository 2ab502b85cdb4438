package billing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/sync/errgroup"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/usage"
)

// Config is the invoice run's configuration.
type Config struct {
	// Location is the platform's time zone: periods are its calendar months.
	Location *time.Location
	// Seller is the platform operator, as its invoices name it.
	Seller Seller
	// Customers are the institutions, in the order a run invoices them.
	Customers []Customer
	// CreditTiers turn availability into an SLA credit percent.
	CreditTiers []credit.Tier
	// GracePeriod is how long after a month ends its invoices may be issued:
	// records still arriving for it are billed on it.
	GracePeriod time.Duration
	// InvoicePrefix and CreditNotePrefix start document numbers:
	// PREFIX-YEAR-000001, one gap-free series per prefix and year.
	InvoicePrefix    string
	CreditNotePrefix string
	// PaymentTerms is the time from issue to due date.
	PaymentTerms time.Duration
	// AdjustMonths is how many earlier months an invoice looks into for late
	// records (13 covers the collector's 400-day horizon).
	AdjustMonths int
	// CutoffLag is how far an invoice's cutoff stays behind the instant it
	// is issued or drafted. The collector stamps a record received before it
	// writes it; a record stamped just before the cutoff but written after
	// the run read the store would be billed by no invoice (its month closed,
	// and the next invoice takes what was received after the cutoff). The
	// lag must exceed the longest write of a batch; records received within
	// it are billed on the next invoice, as adjustments.
	CutoffLag time.Duration
}

// DefaultCutoffLag is the configuration's billing.cutoff_lag: far longer
// than a batch takes from the collector's stamp to the store (at most the
// batching writer's max_delay and flush_timeout, 30 s by default, on
// ClickHouse; one transaction on the embedded store), and short beside a
// grace period of days.
const DefaultCutoffLag = 10 * time.Minute

// DefaultConfig returns the defaults of DESIGN.md §5 (customers aside). It
// has no CutoffLag: a caller that writes the store itself, as the tests do,
// knows when its writes are done.
func DefaultConfig() Config {
	return Config{Location: time.UTC, CreditTiers: credit.DefaultTiers(), GracePeriod: 72 * time.Hour,
		InvoicePrefix: "PM", CreditNotePrefix: "PMC", PaymentTerms: 30 * 24 * time.Hour, AdjustMonths: 13}
}

// Validate reports what is wrong with c, naming the field.
func (c *Config) Validate() error {
	var errs []error
	if c.Location == nil {
		errs = append(errs, errors.New("time_zone: is required"))
	}
	if c.Seller.Name == "" {
		errs = append(errs, errors.New("billing.seller.name: is required: invoices name their issuer"))
	}
	if err := c.Seller.Party.Validate("billing.seller.party"); err != nil {
		errs = append(errs, err)
	}
	if c.GracePeriod < 0 {
		errs = append(errs, errors.New("billing.grace_period: must not be negative"))
	}
	if c.CutoffLag < 0 || c.CutoffLag > c.GracePeriod {
		errs = append(errs, fmt.Errorf("billing.cutoff_lag: %s must be between 0 and billing.grace_period (%s)", c.CutoffLag, c.GracePeriod))
	}
	for _, p := range []struct{ name, v string }{{"invoice_prefix", c.InvoicePrefix}, {"credit_note_prefix", c.CreditNotePrefix}} {
		if !prefixOK(p.v) {
			errs = append(errs, fmt.Errorf("billing.%s: %q must be 1 to 8 letters A-Z", p.name, p.v))
		}
	}
	if c.InvoicePrefix == c.CreditNotePrefix {
		errs = append(errs, errors.New("billing.credit_note_prefix: must differ from invoice_prefix (each is its own series)"))
	}
	if c.AdjustMonths < 0 || c.AdjustMonths > 36 {
		errs = append(errs, errors.New("billing.adjust_months: must be between 0 and 36"))
	}
	seen := map[string]bool{}
	for i, cu := range c.Customers {
		if seen[cu.Tenant] {
			errs = append(errs, fmt.Errorf("tenants[%d].id: %q is listed twice", i, cu.Tenant))
		}
		seen[cu.Tenant] = true
		if cu.Start != "" && state.NextPeriod(cu.Start) == "" {
			errs = append(errs, fmt.Errorf("tenants[%d].billing_start: %q is not a month like 2026-01", i, cu.Start))
		}
		if err := cu.VAT.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("tenants[%d].%w", i, err))
		}
		if err := cu.Party.Validate(fmt.Sprintf("tenants[%d]", i)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func prefixOK(s string) bool {
	if len(s) < 1 || len(s) > 8 {
		return false
	}
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// Options are what a Service is built from; all but Logger are required.
type Options struct {
	Config Config
	Card   *ratecard.Card
	Usage  UsageSource
	SLA    SLASource
	State  state.Store
	Clock  clock.Clock
	Logger *slog.Logger
}

// Service runs invoicing: drafts, issues, verifies and credits.
type Service struct {
	cfg      Config
	card     *ratecard.Card
	cardHash string
	usage    UsageSource
	sla      SLASource
	state    state.Store
	clock    clock.Clock
	log      *slog.Logger
}

// New builds a Service.
func New(o Options) (*Service, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Card == nil || o.Usage == nil || o.SLA == nil || o.State == nil || o.Clock == nil {
		return nil, errors.New("billing: a rate card, usage source, SLA source, state store and clock are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Service{cfg: o.Config, card: o.Card, cardHash: sha256Hex(o.Card.Canonical()), usage: o.Usage, sla: o.SLA,
		state: o.State, clock: o.Clock, log: o.Logger}, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Progress is told how far a run over several institutions is.
type Progress func(done, total int, tenant string)

// ErrNotFound is returned for an unknown institution or document.
var ErrNotFound = errors.New("not found")

func (s *Service) customers(tenants []string) ([]Customer, error) {
	if len(tenants) == 0 {
		return s.cfg.Customers, nil
	}
	var out []Customer
	for _, t := range tenants {
		i := slices.IndexFunc(s.cfg.Customers, func(c Customer) bool { return c.Tenant == t })
		if i < 0 {
			return nil, fmt.Errorf("tenant %q: %w in the configuration", t, ErrNotFound)
		}
		out = append(out, s.cfg.Customers[i])
	}
	return out, nil
}

// IssuableFrom is when period's invoices may be issued: its end plus the grace period.
func (s *Service) IssuableFrom(p calendar.Month) time.Time { return p.End().Add(s.cfg.GracePeriod) }

// Draft computes the invoices of period for tenants (all when empty) with
// every record received so far, in the configured order. Nothing is stored.
// Institutions are drafted side by side, one per CPU: each is a scan of its
// own records, and the stores serve concurrent reads.
func (s *Service) Draft(ctx context.Context, p calendar.Month, tenants []string, progress Progress) ([]*Invoice, error) {
	cs, err := s.customers(tenants)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now().Truncate(time.Microsecond)
	out := make([]*Invoice, len(cs))
	// Progress is told in the configured order, so that "3/10 (ona)" means
	// the first three are drafted and ona is the third: drafts finish in any
	// order. mu serialises it too, which callers need not make safe.
	var mu sync.Mutex
	next := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, c := range cs {
		g.Go(func() error {
			inv, err := s.build(gctx, c, p, s.cutoff(now))
			if err != nil {
				return err
			}
			inv.Provisional = now.Before(s.IssuableFrom(p))
			if err := s.markClosed(gctx, c, p, s.cutoff(now), inv); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out[i] = inv
			for ; next < len(cs) && out[next] != nil; next++ {
				if progress != nil {
					progress(next+1, len(cs), cs[next].Tenant)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// cutoff is the cutoff of an invoice issued or drafted at now.
func (s *Service) cutoff(now time.Time) time.Time { return now.Add(-s.cfg.CutoffLag) }

// markClosed tells a draft of a closed month so (inv.Closed), with the
// adjustment lines its records received up to cutoff add to the next invoice.
func (s *Service) markClosed(ctx context.Context, c Customer, p calendar.Month, cutoff time.Time, inv *Invoice) error {
	closes, err := s.state.ClosedMonths(ctx, c.Tenant)
	if err != nil {
		return fmt.Errorf("closed months: %w", err)
	}
	skip, closed := s.closedSkip(closes, p)
	if !closed {
		return nil
	}
	inv.Closed = skip
	next, err := s.build(ctx, c, p.Next(), cutoff)
	if err != nil {
		return fmt.Errorf("the adjustments of %s: %w", p, err)
	}
	for _, l := range next.Lines {
		if l.Adjusts == p.String() {
			inv.Pending = append(inv.Pending, l)
		}
	}
	return nil
}

// IssueResult is what issuing did for one institution.
type IssueResult struct {
	Tenant string
	// Invoice is the issued invoice; nil when skipped or failed.
	Invoice *Invoice
	// Skipped says why nothing was issued: the month is closed already
	// (issued, or nothing to invoice), or nothing to invoice.
	Skipped string
	// Err is why the institution failed; the run went on with the others.
	Err error
}

// ErrTooEarly is returned when issuing before a period's grace period ended.
var ErrTooEarly = errors.New("too early to issue")

// ErrMonthOrder is returned for a month whose own invoice cannot be issued
// yet: an earlier month of the institution is still open. The message names
// the month to issue first.
var ErrMonthOrder = errors.New("months close in order")

// ErrInstitutionsFailed is wrapped by Issue's error when some institutions
// failed and the others were issued.
var ErrInstitutionsFailed = errors.New("institutions failed")

// Issue issues the invoices of period for tenants (all when empty), in the
// configured order, and closes the month for each (DESIGN.md §5: months
// close in order). An institution whose month is closed already, or with
// nothing to invoice, is skipped; a concurrent run issuing the same period
// skips what the other issued, and the numbers stay gap-free.
//
// An institution that fails (a record the rate card cannot price, an
// earlier month still open) is reported in its result's Err and the others
// are issued: the error then wraps ErrInstitutionsFailed and names each.
// The error is the run's own, with no results, only when it cannot start.
func (s *Service) Issue(ctx context.Context, p calendar.Month, tenants []string, actor string, progress Progress) ([]IssueResult, error) {
	cs, err := s.customers(tenants)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now().Truncate(time.Microsecond)
	if from := s.IssuableFrom(p); now.Before(from) {
		return nil, fmt.Errorf("period %s: %w: its invoices can be issued from %s (billing.grace_period %s after the month)",
			p, ErrTooEarly, from.In(s.cfg.Location).Format(time.RFC3339), s.cfg.GracePeriod)
	}
	if _, err := s.state.Freeze(ctx, s.card.Canonical()); err != nil {
		return nil, fmt.Errorf("freeze the rate card: %w", err)
	}
	out := make([]IssueResult, 0, len(cs))
	var failed []error
	for i, c := range cs {
		if err := ctx.Err(); err != nil {
			// Interrupted: the institutions left have no outcome.
			return out, fmt.Errorf("issue %s: %w", p, err)
		}
		res, err := s.issueOne(ctx, c, p, now, actor)
		if err != nil {
			res = IssueResult{Tenant: c.Tenant, Err: fmt.Errorf("issue %s %s: %w", c.Tenant, p, err)}
			failed = append(failed, res.Err)
			s.log.Error("invoice failed", "tenant", c.Tenant, "period", p.String(), "err", err)
		}
		out = append(out, res)
		if progress != nil {
			progress(i+1, len(cs), c.Tenant)
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("%s: %d of %d %w: %w", p, len(failed), len(cs), ErrInstitutionsFailed, errors.Join(failed...))
	}
	return out, nil
}

// opening is where an institution's months stand for issuing p: after is
// its latest closed month ("" when none), and skip, when not "", says why
// p's own invoice is not to be issued: the month is closed, or before the
// institution's first month.
func (s *Service) opening(ctx context.Context, c Customer, p calendar.Month) (after, skip string, err error) {
	closes, err := s.state.ClosedMonths(ctx, c.Tenant)
	if err != nil {
		return "", "", fmt.Errorf("closed months: %w", err)
	}
	if reason, closed := s.closedSkip(closes, p); closed {
		return "", reason, nil
	}
	if len(closes) > 0 {
		last := closes[len(closes)-1].Period
		if next := state.NextPeriod(last); p.String() != next {
			return "", "", fmt.Errorf("%w: issue %s first (the latest closed month is %s)", ErrMonthOrder, next, last)
		}
		return last, "", nil
	}
	first, why := c.Start, "billing_start"
	if first == "" {
		var ok bool
		if first, ok, err = s.firstUsage(ctx, c.Tenant, p); err != nil {
			return "", "", err
		}
		if !ok {
			return "", "nothing to invoice: no usage yet", nil
		}
		why = "its first usage"
	}
	switch {
	case p.String() < first:
		return "", fmt.Sprintf("nothing to invoice: the institution's first month is %s (%s)", first, why), nil
	case p.String() > first:
		return "", "", fmt.Errorf("%w: issue %s first (the institution's first month: %s)", ErrMonthOrder, first, why)
	}
	return "", "", nil
}

// closedSkip says whether p is closed among closes (oldest first), and why
// its own invoice is not to be issued then.
func (s *Service) closedSkip(closes []state.MonthClose, p calendar.Month) (skip string, closed bool) {
	if len(closes) == 0 || p.String() > closes[len(closes)-1].Period {
		return "", false
	}
	for _, cl := range closes {
		switch {
		case cl.Period != p.String():
		case cl.Document != "":
			return "already issued as " + cl.Document, true
		default:
			return "closed with nothing to invoice on " + cl.ClosedAt.In(s.cfg.Location).Format(time.DateOnly), true
		}
	}
	return fmt.Sprintf("before the first closed month %s: its records are billed as adjustments", closes[0].Period), true
}

// errFound stops a scan at the first record.
var errFound = errors.New("found")

// firstUsage returns the month of tenant's earliest record that starts
// before p ends, looking back as far as an invoice bills late records.
func (s *Service) firstUsage(ctx context.Context, tenant string, p calendar.Month) (string, bool, error) {
	var first time.Time
	err := s.usage.ScanUsage(ctx, metering.UsageFilter{Tenant: tenant, From: p.Start().AddDate(0, -s.cfg.AdjustMonths, 0), To: p.End()},
		func(r usage.Record) error {
			first = r.WindowStart
			return errFound
		})
	if err != nil && !errors.Is(err, errFound) {
		return "", false, fmt.Errorf("find the first usage: %w", err)
	}
	if first.IsZero() {
		return "", false, nil
	}
	return calendar.MonthOf(first, p.Loc).String(), true, nil
}

func (s *Service) issueOne(ctx context.Context, c Customer, p calendar.Month, now time.Time, actor string) (IssueResult, error) {
	after, skip, err := s.opening(ctx, c, p)
	if err != nil || skip != "" {
		return IssueResult{Tenant: c.Tenant, Skipped: skip}, err
	}
	inv, err := s.build(ctx, c, p, s.cutoff(now))
	if err != nil {
		return IssueResult{}, err
	}
	if len(inv.Lines) == 0 {
		err := s.state.CloseMonth(ctx, state.MonthClose{Tenant: c.Tenant, Period: p.String(), After: after, ClosedAt: now},
			state.AuditEntry{Actor: actor, Action: "month.close", Detail: auditDetail(inv)})
		if err != nil {
			return s.concurrent(ctx, c, p, err)
		}
		return IssueResult{Tenant: c.Tenant, Skipped: "nothing to invoice (the month is closed)"}, nil
	}
	series := fmt.Sprintf("%s-%d", s.cfg.InvoicePrefix, now.In(s.cfg.Location).Year())
	key := fmt.Sprintf("invoice/%s/%s", c.Tenant, p)
	doc, err := s.state.Issue(ctx, series, func(seq int64) (state.Document, error) {
		d, err := s.document(*inv, series, seq, now, key)
		d.Close = &state.MonthClose{After: after}
		return d, err
	}, state.AuditEntry{Actor: actor, Action: "invoice.issue", Detail: auditDetail(inv)})
	if err != nil {
		return s.concurrent(ctx, c, p, err)
	}
	issued, err := decode(doc.Body)
	if err != nil {
		return IssueResult{}, err
	}
	s.log.Info("invoice issued", "number", doc.Number, "tenant", c.Tenant, "period", p.String(), "payable", issued.Totals.Payable.StringFixed(2))
	return IssueResult{Tenant: c.Tenant, Invoice: issued}, nil
}

// concurrent turns the refusal of an issue or close that another run beat
// (the month is closed now) into a skip; any other error stays one.
func (s *Service) concurrent(ctx context.Context, c Customer, p calendar.Month, err error) (IssueResult, error) {
	if !errors.Is(err, state.ErrExists) && !errors.Is(err, state.ErrMonthOrder) {
		return IssueResult{}, err
	}
	if _, skip, err2 := s.opening(ctx, c, p); err2 == nil && skip != "" {
		return IssueResult{Tenant: c.Tenant, Skipped: skip + " (by a concurrent run)"}, nil
	}
	return IssueResult{}, err
}

func auditDetail(inv *Invoice) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"tenant": inv.Customer.Tenant, "period": inv.Period, "payable": inv.Totals.Payable.StringFixed(2), "inputs_hash": inv.InputsHash})
	return b
}

// document numbers inv and encodes it as the state store keeps it.
func (s *Service) document(inv Invoice, series string, seq int64, now time.Time, key string) (state.Document, error) {
	inv.Number = fmt.Sprintf("%s-%06d", series, seq)
	inv.IssueDate = now.In(s.cfg.Location).Format(time.DateOnly)
	inv.DueDate = now.In(s.cfg.Location).Add(s.cfg.PaymentTerms).Format(time.DateOnly)
	inv.Provisional = false
	body, err := json.Marshal(inv)
	if err != nil {
		return state.Document{}, fmt.Errorf("encode %s: %w", inv.Number, err)
	}
	kind := state.KindInvoice
	if inv.Kind == KindCreditNote {
		kind = state.KindCreditNote
	}
	return state.Document{Series: series, Seq: seq, Number: inv.Number, Kind: kind, Tenant: inv.Customer.Tenant, Period: inv.Period,
		UniqueKey: key, Refers: inv.Refers, IssuedAt: now, Hash: inv.InputsHash, Body: body}, nil
}

func decode(body []byte) (*Invoice, error) {
	var inv Invoice
	if err := json.Unmarshal(body, &inv); err != nil {
		return nil, fmt.Errorf("decode a stored document: %w", err)
	}
	return &inv, nil
}

// coverage is what earlier invoices of an institution billed of each month.
type coverage struct {
	upTo map[string]time.Time  // the latest cutoff that billed the month
	sla  map[string]MonthInput // the month's own invoice's SLA figures
}

func (s *Service) coverage(ctx context.Context, tenant string) (*coverage, error) {
	docs, err := s.state.ListDocuments(ctx, state.DocumentFilter{Tenant: tenant, Kind: state.KindInvoice})
	if err != nil {
		return nil, fmt.Errorf("list the invoices of %s: %w", tenant, err)
	}
	cv := &coverage{upTo: map[string]time.Time{}, sla: map[string]MonthInput{}}
	for _, d := range docs {
		inv, err := decode(d.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Number, err)
		}
		for i, m := range inv.Inputs.Months {
			if m.Selection.UpTo.After(cv.upTo[m.Period]) {
				cv.upTo[m.Period] = m.Selection.UpTo
			}
			if i == 0 {
				cv.sla[m.Period] = m
			}
		}
	}
	return cv, nil
}

// build plans and computes the invoice of c for p with the records received
// up to cutoff.
func (s *Service) build(ctx context.Context, c Customer, p calendar.Month, cutoff time.Time) (*Invoice, error) {
	cv, err := s.coverage(ctx, c.Tenant)
	if err != nil {
		return nil, err
	}
	main, err := s.monthInput(ctx, c.Tenant, p, cv, Selection{UpTo: cutoff})
	if err != nil {
		return nil, err
	}
	months := []MonthInput{main}
	late, err := mayHaveLate(ctx, s.usage, c.Tenant, p, s.cfg.AdjustMonths, cv, cutoff)
	if err != nil {
		return nil, err
	}
	// Earlier months, oldest first: those with records received since the
	// last invoice that billed them (or ever, if none did).
	for back := s.cfg.AdjustMonths; late && back >= 1; back-- {
		q := monthBefore(p, back)
		sel := Selection{After: cv.upTo[q.String()], UpTo: cutoff}
		late, err := countMonth(ctx, s.usage, s.card, c.Tenant, q, sel)
		if err != nil {
			return nil, err
		}
		if late.records == 0 {
			continue
		}
		mi, err := s.monthInput(ctx, c.Tenant, q, cv, sel)
		if err != nil {
			return nil, err
		}
		months = append(months, mi)
	}
	in := Inputs{Tenant: c.Tenant, Period: p.String(), Cutoff: cutoff, RateCard: s.cardHash, CreditTiers: s.cfg.CreditTiers, Months: months}
	return derive(ctx, s.usage, s.card, s.cfg.Seller, c, p.Loc, in)
}

// monthInput returns a month's input with its SLA figures: frozen ones when
// the month was invoiced already, else the SLA source's.
func (s *Service) monthInput(ctx context.Context, tenant string, p calendar.Month, cv *coverage, sel Selection) (MonthInput, error) {
	mi := MonthInput{Period: p.String(), Selection: sel, DigestVersion: DigestVersion}
	if prev, ok := cv.sla[p.String()]; ok {
		mi.SLA = prev.SLA
		return mi, nil
	}
	fig, ok, err := s.sla.SLA(ctx, tenant, p)
	if err != nil {
		return mi, fmt.Errorf("SLA of %s in %s: %w", tenant, p, err)
	}
	if ok {
		mi.SLA = &fig
	}
	return mi, nil
}

// derive computes an invoice from its inputs and the stored records: what
// issuing does once, and `verify` again.
func derive(ctx context.Context, src UsageSource, card *ratecard.Card, seller Seller, c Customer, loc *time.Location, in Inputs) (*Invoice, error) {
	p, err := calendar.Parse(in.Period, loc)
	if err != nil {
		return nil, err
	}
	inv := &Invoice{Kind: KindInvoice, Period: p.String(), PeriodStart: p.Start().Format(time.DateOnly),
		PeriodEnd: p.End().AddDate(0, 0, -1).Format(time.DateOnly), Currency: card.Currency, Seller: seller, Customer: c, Inputs: in}
	inv.Inputs.Months = slices.Clone(in.Months)
	for i := range inv.Inputs.Months {
		m := &inv.Inputs.Months[i]
		mp, err := calendar.Parse(m.Period, loc)
		if err != nil {
			return nil, err
		}
		m.CreditPercent = decimal.Zero
		if m.SLA != nil {
			m.CreditPercent = credit.Percent(in.CreditTiers, m.SLA.Availability)
		}
		if i == 0 {
			r, err := rateMonth(ctx, src, card, c.Tenant, mp, m.Selection, m.DigestVersion)
			if err != nil {
				return nil, err
			}
			m.Records, m.Digest, m.Days = r.records, r.Digest(), r.Days()
			inv.Lines = append(inv.Lines, price(card, loc, r.q, nil, "")...)
			inv.Annex = append(inv.Annex, annexRows(r.annex, r.topUp, r.uplift, "")...)
			continue
		}
		// A late record is priced on top of what the month's earlier invoices
		// billed: the difference between rating everything received by now
		// and everything received by the last cutoff.
		before, err := rateMonth(ctx, src, card, c.Tenant, mp, Selection{UpTo: m.Selection.After}, m.DigestVersion)
		if err != nil {
			return nil, err
		}
		now, err := rateMonth(ctx, src, card, c.Tenant, mp, Selection{UpTo: m.Selection.UpTo}, m.DigestVersion)
		if err != nil {
			return nil, err
		}
		m.Records, m.Digest, m.Days = now.records-before.records, now.Digest(), lateDays(now.Days(), before.Days())
		start := map[meterClass]*big.Rat{}
		for k, v := range before.q {
			addRat(start, meterClass{k.meter, k.class}, v)
		}
		inv.Lines = append(inv.Lines, price(card, loc, subRat(now.q, before.q), start, m.Period)...)
		inv.Annex = append(inv.Annex, annexRows(subRat(now.annex, before.annex), subRat(now.topUp, before.topUp), subRat(now.uplift, before.uplift), m.Period)...)
	}
	inv.total()
	inv.InputsHash = inv.inputsHash()
	return inv, nil
}

// lateDays is what an adjustment bills per day: the records of now beyond
// before's, on the days that have some, with now's digest.
func lateDays(now, before map[string]DayBill) map[string]DayBill {
	out := map[string]DayBill{}
	for d, b := range now {
		if n := b.Records - before[d].Records; n != 0 {
			out[d] = DayBill{Records: n, Digest: b.Digest}
		}
	}
	return out
}

// subRat returns a − b per key, leaving out zeros.
func subRat[K comparable](a, b map[K]*big.Rat) map[K]*big.Rat {
	out := map[K]*big.Rat{}
	for k, v := range a {
		d := new(big.Rat).Set(v)
		if w, ok := b[k]; ok {
			d.Sub(d, w)
		}
		if d.Sign() != 0 {
			out[k] = d
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok && w.Sign() != 0 {
			out[k] = new(big.Rat).Neg(w)
		}
	}
	return out
}

// Document returns an issued invoice or credit note.
func (s *Service) Document(ctx context.Context, number string) (*Invoice, error) {
	d, err := s.state.Document(ctx, number)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("document %s: %w", number, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return decode(d.Body)
}

// List returns the issued documents f selects.
func (s *Service) List(ctx context.Context, f state.DocumentFilter) ([]*Invoice, error) {
	docs, err := s.state.ListDocuments(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]*Invoice, 0, len(docs))
	for _, d := range docs {
		inv, err := decode(d.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Number, err)
		}
		out = append(out, inv)
	}
	return out, nil
}

// ErrVerify is wrapped by every difference Verify finds.
var ErrVerify = errors.New("verification failed")

// Verify re-derives an issued document from its frozen inputs and the stored
// records and checks that it comes out bit for bit as issued.
func (s *Service) Verify(ctx context.Context, number string) error {
	d, err := s.state.Document(ctx, number)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("document %s: %w", number, ErrNotFound)
	}
	if err != nil {
		return err
	}
	inv, err := decode(d.Body)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", number, ErrVerify, err)
	}
	if h := inv.inputsHash(); h != d.Hash || h != inv.InputsHash {
		return fmt.Errorf("%s: %w: the inputs hash to %s, the document says %s and the store %s", number, ErrVerify, h, inv.InputsHash, d.Hash)
	}
	content, err := s.state.FrozenContent(ctx, inv.Inputs.RateCard)
	if err != nil {
		return fmt.Errorf("%s: %w: the frozen rate card %s: %w", number, ErrVerify, inv.Inputs.RateCard, err)
	}
	if h := sha256Hex(content); h != inv.Inputs.RateCard {
		return fmt.Errorf("%s: %w: the frozen rate card's content hashes to %s, not %s", number, ErrVerify, h, inv.Inputs.RateCard)
	}
	card, err := ratecard.ParseCanonical(content)
	if err != nil {
		return fmt.Errorf("%s: %w: the frozen rate card: %w", number, ErrVerify, err)
	}
	var again *Invoice
	if inv.Kind == KindCreditNote {
		orig, err := s.Document(ctx, inv.Refers)
		if err != nil {
			return fmt.Errorf("%s: %w: the credited invoice: %w", number, ErrVerify, err)
		}
		again, err = CreditNoteOf(orig, inv.Inputs.Credit, inv.Inputs.Cutoff)
		if err != nil {
			return fmt.Errorf("%s: %w: %w", number, ErrVerify, err)
		}
		if len(inv.Lines) == 1 && inv.Lines[0].Meter == CorrectionMeter && inv.Lines[0].Unit == "" && len(again.Lines) == 1 {
			// Issued before the correction line had a class, band and unit:
			// it is re-derived as it was.
			again.Lines[0].Class, again.Lines[0].Band, again.Lines[0].Unit = "", 0, ""
		}
	} else {
		again, err = derive(ctx, s.usage, card, inv.Seller, inv.Customer, s.cfg.Location, inv.Inputs)
		if err != nil {
			return fmt.Errorf("%s: %w: re-derive: %w", number, ErrVerify, err)
		}
		if !slices.ContainsFunc(inv.Inputs.Months, func(m MonthInput) bool { return m.Days != nil }) {
			// Issued before invoices said what they billed per day: it is
			// re-derived as it was, the records' digest still checks them.
			for i := range again.Inputs.Months {
				again.Inputs.Months[i].Days = nil
			}
			// Nor did their lines name tier ranges and rate-card versions.
			for i := range again.Lines {
				again.Lines[i].Tier, again.Lines[i].Version, again.Lines[i].Effective = nil, "", ""
			}
			for i := range again.Annex {
				again.Annex[i].Measured, again.Annex[i].MinRunTopUp, again.Annex[i].ReservedUplift = nil, nil, nil
			}
			again.InputsHash = again.inputsHash()
		}
	}
	if inv.Allowances == nil && len(again.Allowances) == 0 {
		// Invoices issued before documents of both kinds had one shape wrote
		// no allowances as null, not [].
		again.Allowances = nil
	}
	for i, m := range again.Inputs.Months {
		if want := inv.Inputs.Months[i]; m.Digest != want.Digest || m.Records != want.Records {
			return fmt.Errorf("%s: %w: the records of %s changed since issue: %d records with digest %.12s…, issued with %d and %.12s…%s",
				number, ErrVerify, m.Period, m.Records, m.Digest, want.Records, want.Digest, changedDays(want.Days, m.Days))
		}
	}
	series := d.Series
	doc, err := s.document(*again, series, d.Seq, d.IssuedAt, d.UniqueKey)
	if err != nil {
		return err
	}
	if !bytes.Equal(doc.Body, d.Body) {
		return fmt.Errorf("%s: %w: re-derived document differs from the issued one: %s", number, ErrVerify, firstDiff(doc.Body, d.Body))
	}
	return nil
}

// changedDays names the days whose records differ between what an invoice
// billed and what its selection reads now.
func changedDays(issued, now map[string]DayBill) string {
	var out []string
	for _, d := range slices.Sorted(maps.Keys(mergeKeys(issued, now))) {
		if a, b := issued[d], now[d]; a != b {
			out = append(out, fmt.Sprintf("%s (%d records, issued with %d)", d, b.Records, a.Records))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; changed on " + strings.Join(out, ", ")
}

func mergeKeys(a, b map[string]DayBill) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// firstDiff shows where two encodings part.
func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	ctx := func(x []byte) string { return string(x[max(0, i-40):min(len(x), i+40)]) }
	return fmt.Sprintf("at byte %d: re-derived …%s… vs issued …%s…", i, ctx(a), ctx(b))
}

// CreditInput is what a credit note is derived from.
type CreditInput struct {
	// Amount is the tax-exclusive amount credited; nil credits the whole invoice.
	Amount *Money `json:"amount,omitempty"`
	Reason string `json:"reason"`
	// VATLeft, on the partial note that brings the credited amount to the
	// invoice's total, is the VAT the earlier notes left uncredited: the
	// note takes exactly that, so that a full credit through partial notes
	// leaves 0.00 (each note's own rounding could leave a cent).
	VATLeft *Money `json:"vat_left,omitempty"`
}

// CreditNote issues a credit note against invoice number: the whole invoice
// (amount nil) or a tax-exclusive amount of it, never more than what earlier
// credit notes left.
func (s *Service) CreditNote(ctx context.Context, number string, amount *decimal.Decimal, reason, actor string) (*Invoice, error) {
	if reason == "" {
		return nil, errors.New("reason: a credit note needs a reason")
	}
	for range 5 { // a concurrent credit note of the same invoice takes our key: recount and retry
		inv, err := s.Document(ctx, number)
		if err != nil {
			return nil, err
		}
		if inv.Kind != KindInvoice {
			return nil, fmt.Errorf("%s is a %s: only invoices are credited", number, inv.Kind)
		}
		prior, err := s.List(ctx, state.DocumentFilter{Refers: number, Kind: state.KindCreditNote})
		if err != nil {
			return nil, err
		}
		left, vatLeft := inv.Totals.TaxExclusive.Decimal, inv.Totals.VAT.Decimal
		for _, cn := range prior {
			left = left.Add(cn.Totals.TaxExclusive.Decimal)
			vatLeft = vatLeft.Add(cn.Totals.VAT.Decimal)
		}
		in := CreditInput{Reason: reason}
		switch {
		case amount == nil && len(prior) > 0:
			return nil, fmt.Errorf("%s already has %d credit note(s): credit what is left with --amount (at most %s)", number, len(prior), left.StringFixed(2))
		case amount != nil && (!amount.IsPositive() || amount.Exponent() < -2):
			return nil, fmt.Errorf("amount: %s must be positive, in cents", amount)
		case amount != nil && amount.GreaterThan(left):
			return nil, fmt.Errorf("amount: %s is more than the %s left to credit on %s", amount.StringFixed(2), left.StringFixed(2), number)
		case amount != nil:
			in.Amount = &Money{*amount}
			if amount.Equal(left) {
				in.VATLeft = &Money{vatLeft}
			}
		}
		now := s.clock.Now().Truncate(time.Microsecond)
		cn, err := CreditNoteOf(inv, &in, now)
		if err != nil {
			return nil, err
		}
		series := fmt.Sprintf("%s-%d", s.cfg.CreditNotePrefix, now.In(s.cfg.Location).Year())
		key := fmt.Sprintf("credit_note/%s/%d", number, len(prior)+1)
		doc, err := s.state.Issue(ctx, series, func(seq int64) (state.Document, error) {
			return s.document(*cn, series, seq, now, key)
		}, state.AuditEntry{Actor: actor, Action: "credit_note.issue", Detail: auditDetail(cn)})
		if errors.Is(err, state.ErrExists) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return decode(doc.Body)
	}
	return nil, fmt.Errorf("credit %s: concurrent credit notes kept conflicting; try again", number)
}

// CreditNoteOf derives the credit note of inv that in describes, as issued at
// now: what CreditNote issues and Verify re-derives (unnumbered).
func CreditNoteOf(inv *Invoice, in *CreditInput, now time.Time) (*Invoice, error) {
	if in == nil {
		return nil, errors.New("a credit note without its credit input")
	}
	cn := &Invoice{Kind: KindCreditNote, Period: inv.Period, PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd,
		Currency: inv.Currency, Seller: inv.Seller, Customer: inv.Customer, Refers: inv.Number, Reason: in.Reason,
		Inputs: Inputs{Tenant: inv.Inputs.Tenant, Period: inv.Period, Cutoff: now, RateCard: inv.Inputs.RateCard, Invoice: inv.InputsHash, Credit: in}}
	if in.Amount == nil {
		for _, l := range inv.Lines {
			l.Quantity, l.Amount = Quantity{l.Quantity.Neg()}, Money{l.Amount.Neg()}
			cn.Lines = append(cn.Lines, l)
		}
		for _, a := range inv.Allowances {
			a.Base, a.Amount = Money{a.Base.Neg()}, Money{a.Amount.Neg()}
			cn.Allowances = append(cn.Allowances, a)
		}
		for _, r := range inv.Annex {
			r.Quantity = Quantity{r.Quantity.Neg()}
			r.Measured, r.MinRunTopUp, r.ReservedUplift = r.Measured.neg(), r.MinRunTopUp.neg(), r.ReservedUplift.neg()
			cn.Annex = append(cn.Annex, r)
		}
		vat := inv.VAT
		cn.VAT = make([]VATBreakdown, len(vat))
		for i, v := range vat {
			v.Taxable, v.Amount = Money{v.Taxable.Neg()}, Money{v.Amount.Neg()}
			cn.VAT[i] = v
		}
		t := inv.Totals
		cn.Totals = Totals{Lines: Money{t.Lines.Neg()}, Allowances: Money{t.Allowances.Neg()}, TaxExclusive: Money{t.TaxExclusive.Neg()},
			VAT: Money{t.VAT.Neg()}, Payable: Money{t.Payable.Neg()}}
	} else {
		amt := in.Amount.Neg()
		cn.Lines = []Line{{Meter: CorrectionMeter, Class: CorrectionClass, Band: 1, Unit: CorrectionUnit, Quantity: Quantity{decimal.NewFromInt(1)},
			UnitPrice: Price{amt}, Amount: Money{amt}}}
		cn.Annex = []AnnexRow{}
		v := inv.Customer.VAT
		vat := money(amt.Mul(v.Rate).Div(decimal.NewFromInt(100)))
		if in.VATLeft != nil {
			vat = Money{in.VATLeft.Neg()}
		}
		cn.VAT = []VATBreakdown{{Category: v.Category, Rate: v.Rate, Taxable: Money{amt}, Amount: vat, ExemptionReason: v.ExemptionReason, ExemptionCode: v.ExemptionCode}}
		cn.Totals = Totals{Lines: Money{amt}, Allowances: money(decimal.Zero), TaxExclusive: Money{amt}, VAT: vat, Payable: money(amt.Add(vat.Decimal))}
	}
	if cn.Allowances == nil {
		cn.Allowances = []Allowance{}
	}
	cn.InputsHash = cn.inputsHash()
	return cn, nil
}
