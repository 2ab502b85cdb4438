package billing_test

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/usage"
)

// A fixed seed makes a failure reproducible; by default every run draws a
// new one so that, over many CI runs, the properties see much more usage
// than any single run could afford.
var propertySeed = flag.Uint64("property.seed", 0, "seed of the billing property tests' usage generator (0: a new one, logged)")

func seedOf(t *testing.T) uint64 {
	t.Helper()
	seed := *propertySeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("usage generator seed %d (rerun with -property.seed=%d)", seed, seed)
	return seed
}

// The instants the generator aims at: a record belongs to the month of its
// window start and is priced by the version effective at it, so these are
// where an engine that looked at anything else would go wrong.
var (
	novStart = billingtest.Period().Start().UTC()
	decStart = billingtest.Period().End().UTC()
	v2Start  = time.Date(2026, 11, 16, 0, 0, 0, 0, billingtest.Brussels()).UTC()
)

// forEachCase runs check on cases of random usage, each with its own
// generator derived from the seed and its number so that one case can be
// replayed alone, and stops at the first failing case: the rest would mostly
// repeat it. The cases take the state stores in turn: the properties are the
// engine's, which every store must only keep, so each store gets a share of
// the cases rather than all of them again.
func forEachCase(t *testing.T, seed uint64, property, cases int, check func(t *testing.T, rng *rand.Rand, open func(*testing.T) state.Store)) {
	t.Helper()
	stores := stateStores(t)
	names := slices.Sorted(maps.Keys(stores))
	for i := range cases {
		name := names[i%len(names)]
		rng := rand.New(rand.NewPCG(seed, uint64(property)<<32|uint64(i)))
		if !t.Run(fmt.Sprintf("it holds for random usage %d on the %s state store", i, name), func(t *testing.T) { check(t, rng, stores[name]) }) {
			t.Logf("random usage %d of seed %d breaks the property", i, seed)
			return
		}
	}
}

// TestPropertyBasedInvoices checks DESIGN.md §5's rules on random months of
// usage rather than on the worked example alone: the golden test pins one
// invoice to the cent, these pin what must hold for every invoice, including
// usage nobody thought of writing down (windows cut anywhere, runs across
// v2's start and the month's edges, the 100 GB tier crossed or not).
func TestPropertyBasedInvoices(t *testing.T) {
	seed := seedOf(t)
	period := billingtest.Period()

	t.Run("the subtotal is the sum of the lines", func(t *testing.T) {
		t.Parallel()
		forEachCase(t, seed, 1, 30, func(t *testing.T, rng *rand.Rand, open func(*testing.T) state.Store) {
			_, invs := issueStored(t, open, generate(rng))
			for _, inv := range invs {
				checkSums(t, inv)
			}
		})
	})

	t.Run("the same usage split into any windows, batches or arrival order gives the same invoice", func(t *testing.T) {
		t.Parallel()
		forEachCase(t, seed, 2, 20, func(t *testing.T, rng *rand.Rand, open func(*testing.T) state.Store) {
			recs := generate(rng)
			ctx := context.Background()

			p1 := newPlatform(t, issueTime.Add(-time.Hour))
			p1.ship(t, recs)
			p1.clock.Advance(time.Hour)
			res1, err := newService(t, p1, open(t), billingtest.SLA{}).Issue(ctx, period, nil, "test", nil)
			if err != nil {
				t.Fatal(err)
			}

			again := splitAll(rng, recs)
			rng.Shuffle(len(again), func(i, j int) { again[i], again[j] = again[j], again[i] })
			p2 := newPlatform(t, issueTime.Add(-time.Hour))
			// Batches arrive over time, as from an agent's spool: received_at
			// differs between them and must not matter.
			batches := shipInBatches(t, rng, p2, again)
			p2.clock.Advance(time.Hour - time.Duration(batches)*time.Second)
			svc2 := newService(t, p2, open(t), billingtest.SLA{})
			res2, err := svc2.Issue(ctx, period, nil, "test", nil)
			if err != nil {
				t.Fatal(err)
			}

			if len(res1) != len(res2) {
				t.Fatalf("%d issue results, then %d after splitting", len(res1), len(res2))
			}
			for i := range res1 {
				if res1[i].Skipped != res2[i].Skipped {
					t.Errorf("%s: skipped %q, then %q after splitting", res1[i].Tenant, res1[i].Skipped, res2[i].Skipped)
					continue
				}
				if res1[i].Invoice == nil {
					continue
				}
				if a, b := billed(t, res1[i].Invoice), billed(t, res2[i].Invoice); a != b {
					a, b := content(res1[i].Invoice), content(res2[i].Invoice)
					t.Errorf("%s: %d records as generated give\n%s\nthe same usage as %d records in %d batches gives\n%s",
						res1[i].Tenant, len(recs), a, len(again), batches, b)
				}
				if err := svc2.Verify(ctx, res2[i].Invoice.Number); err != nil {
					t.Errorf("verify %s: %v", res2[i].Invoice.Number, err)
				}
			}
		})

		// The smallest usage the property found broken, kept so that the
		// failure does not depend on the seed: a 1 GiB container that ran from
		// an hour before November to 30 s into it, its windows cut on the
		// hour. The run lasted over an hour, so no minimum run duration
		// applies; its November part is 30 s of 1 GiB.
		t.Run("a run that started in October is not lifted to the minimum in November, however its windows are cut", func(t *testing.T) {
			c := src("caami", "portal", "web", usage.EnvProd, "c-from-october")
			const gibSecond = int64(1) << 30
			november := rec(c, usage.MeterMemoryLimit, novStart, novStart.Add(30*time.Second), 30*gibSecond)
			for _, october := range [][]usage.Record{
				{rec(c, usage.MeterMemoryLimit, novStart.Add(-time.Hour), novStart, 3600*gibSecond)},
				{rec(c, usage.MeterMemoryLimit, novStart.Add(-time.Hour), novStart.Add(-10*time.Second), 3590*gibSecond),
					rec(c, usage.MeterMemoryLimit, novStart.Add(-10*time.Second), novStart, 10*gibSecond)},
			} {
				for name, open := range stateStores(t) {
					_, invs := issueStored(t, open, append(october, november))
					if len(invs) != 1 {
						t.Fatalf("%d invoices, want caami's only", len(invs))
					}
					var got []string
					for _, r := range invs[0].Annex {
						got = append(got, fmt.Sprintf("%s%s %s", adjusts(r.Adjusts), r.Meter, r.Quantity.StringFixed(6)))
					}
					// 30 GiB·s is 0.008333 GiB-hour; lifted to 60 s it would be twice that.
					want := []string{"memory 0.008333", "(adjusts 2026-10) memory 1.000000"}
					if !slices.Equal(got, want) {
						t.Errorf("on the %s state store, with October in %d window(s) (the last starting %s before November): annex %q, want %q",
							name, len(october), novStart.Sub(october[len(october)-1].WindowStart), got, want)
					}
				}
			}
		})
	})

	t.Run("replays change nothing", func(t *testing.T) {
		t.Parallel()
		forEachCase(t, seed, 3, 20, func(t *testing.T, rng *rand.Rand, open func(*testing.T) state.Store) {
			recs := generate(rng)
			ctx := context.Background()
			p := newPlatform(t, issueTime.Add(-2*time.Hour))
			n := shipInBatches(t, rng, p, recs)
			svc := newService(t, p, open(t), billingtest.SLA{})
			drafts := mustDraft(t, svc, period)

			// Later, so that a replay that overwrote received_at would show
			// in the digest of the selected records.
			p.clock.Advance(10 * time.Minute)
			replay := slices.Clone(recs)
			rng.Shuffle(len(replay), func(i, j int) { replay[i], replay[j] = replay[j], replay[i] })
			n += shipInBatches(t, rng, p, replay)
			var subset []usage.Record
			for _, r := range recs {
				if rng.IntN(3) == 0 {
					subset = append(subset, r)
				}
			}
			n += shipInBatches(t, rng, p, subset)
			p.clock.Advance(2*time.Hour - 10*time.Minute - time.Duration(n)*time.Second)

			res, err := svc.Issue(ctx, period, nil, "test", nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, draft := range drafts {
				inv := res[i].Invoice
				if inv == nil {
					if len(draft.Lines) != 0 {
						t.Errorf("%s: the draft has %d lines, but after replays nothing was issued (%s)", draft.Customer.Tenant, len(draft.Lines), res[i].Skipped)
					}
					continue
				}
				if a, b := mustJSON(t, draft.Lines), mustJSON(t, inv.Lines); string(a) != string(b) {
					t.Errorf("%s: the lines before replays\n%s\ndiffer from those after\n%s", inv.Customer.Tenant, a, b)
				}
				if a, b := mustJSON(t, draft.Totals), mustJSON(t, inv.Totals); string(a) != string(b) {
					t.Errorf("%s: the totals before replays\n%s\ndiffer from those after\n%s", inv.Customer.Tenant, a, b)
				}
				if billed(t, draft) != billed(t, inv) {
					t.Errorf("%s: before replays\n%s\nafter\n%s", inv.Customer.Tenant, content(draft), content(inv))
				}
				for j, m := range draft.Inputs.Months {
					if got := inv.Inputs.Months[j]; got.Records != m.Records || got.Digest != m.Digest {
						t.Errorf("%s: %s: %d records with digest %.12s before replays, %d with %.12s after: a replay changed a stored record",
							inv.Customer.Tenant, m.Period, m.Records, m.Digest, got.Records, got.Digest)
					}
				}
				if err := svc.Verify(ctx, inv.Number); err != nil {
					t.Errorf("verify %s: %v", inv.Number, err)
				}
			}
		})
	})

	t.Run("VAT is applied once", func(t *testing.T) {
		t.Parallel()
		var differ, total int
		forEachCase(t, seed, 4, 30, func(t *testing.T, rng *rand.Rand, open func(*testing.T) state.Store) {
			_, invs := issueStored(t, open, generate(rng))
			for _, inv := range invs {
				total++
				if checkVAT(t, inv) {
					differ++
				}
			}
		})
		t.Logf("per-line VAT would have differed from the document's on %d of %d invoices", differ, total)

		// Random usage makes a difference likely, not certain: this one is
		// built so that rounding VAT per line loses a cent.
		t.Run("a cent that per-line rounding loses is charged on the total", func(t *testing.T) {
			prod := src("caami", "portal", "web", usage.EnvProd, "c-vat-prod")
			test := src("caami", "portal", "web", usage.EnvTest, "c-vat-test")
			ws := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
			recs := []usage.Record{
				rec(prod, usage.MeterCPU, ws, ws.Add(time.Hour), 1_800_000_000_000), // 0.5 vCPU-hour × 0.0400 = 0.02
				rec(test, usage.MeterCPU, ws, ws.Add(time.Hour), 3_600_000_000_000), // 1 vCPU-hour × 0.0200 = 0.02
			}
			for name, open := range stateStores(t) {
				t.Run("on the "+name+" state store", func(t *testing.T) {
					_, invs := issueStored(t, open, recs)
					if len(invs) != 1 {
						t.Fatalf("%d invoices, want caami's only", len(invs))
					}
					inv := invs[0]
					if !checkVAT(t, inv) {
						t.Errorf("per-line VAT is the same as the document's: the case does not tell them apart\n%s", content(inv))
					}
					if got := inv.Totals.VAT.StringFixed(2); got != "0.01" || inv.Totals.TaxExclusive.StringFixed(2) != "0.04" {
						t.Errorf("VAT %s on %s, want 0.01 on 0.04 (21 %% of 0.04 is 0.0084; of each 0.02 line 0.0042, which rounds to 0.00)",
							got, inv.Totals.TaxExclusive.StringFixed(2))
					}
				})
			}
		})
	})

	t.Run("only allowances and credit notes are negative", func(t *testing.T) {
		t.Parallel()
		forEachCase(t, seed, 5, 30, func(t *testing.T, rng *rand.Rand, open func(*testing.T) state.Store) {
			ctx := context.Background()
			svc, invs := issueStored(t, open, generate(rng))
			for _, inv := range invs {
				checkSigns(t, inv)
				cn, err := svc.CreditNote(ctx, inv.Number, nil, "property test: credit the whole invoice", "test")
				if err != nil {
					t.Fatal(err)
				}
				checkCreditNote(t, inv, cn)
				checkSums(t, cn)
				for _, number := range []string{inv.Number, cn.Number} {
					if err := svc.Verify(ctx, number); err != nil {
						t.Errorf("verify %s: %v", number, err)
					}
				}
			}
		})
	})
}

func TestPropertyRateCardVersionFollowsTheWindowStartInBrussels(t *testing.T) {
	// v2 is effective from 2026-11-16 00:00 in Brussels (CET, UTC+1): a window
	// that starts a second earlier is v1's even though it ends well into v2.
	a := src("caami", "portal", "web", usage.EnvProd, "c-before-v2")
	b := src("caami", "portal", "web", usage.EnvProd, "c-at-v2")
	before := time.Date(2026, 11, 15, 22, 59, 59, 0, time.UTC)
	at := time.Date(2026, 11, 15, 23, 0, 0, 0, time.UTC)
	recs := []usage.Record{
		rec(a, usage.MeterCPU, before, before.Add(time.Hour), 3_600_000_000_000), // 1 vCPU-hour
		rec(b, usage.MeterCPU, at, at.Add(time.Hour), 7_200_000_000_000),         // 2 vCPU-hours
	}
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			_, invs := issueStored(t, open, recs)
			if len(invs) != 1 {
				t.Fatalf("%d invoices, want caami's only", len(invs))
			}
			var got []string
			for _, l := range invs[0].Lines {
				got = append(got, lineText(l))
			}
			want := []string{
				"cpu prod band 1: 1.000000 × 0.0400 = 0.04",
				"cpu prod band 1: 2.000000 × 0.0360 = 0.07",
			}
			if !slices.Equal(got, want) {
				t.Errorf("lines\n%s\nwant (v1's price for the window starting at %s, v2's for %s)\n%s",
					join(got), before.Format(time.RFC3339), at.Format(time.RFC3339), join(want))
			}
		})
	}
}

// issueStored stores recs straight into a fresh metering store, as the
// collector would have received them an hour before issueTime, and issues
// November: faster than the collector for the properties that are not about
// arrival.
func issueStored(t *testing.T, open func(*testing.T) state.Store, recs []usage.Record) (*billing.Service, []*billing.Invoice) {
	t.Helper()
	ctx := context.Background()
	p := newPlatform(t, issueTime.Add(-time.Hour))
	recs = slices.Clone(recs)
	lim := usage.DefaultLimits()
	for i := range recs {
		// What the collector would refuse is the generator's mistake, not the
		// engine's: fail loudly rather than bill it.
		if ps := usage.Validate(&recs[i], i, p.clock.Now(), lim); ps != nil {
			t.Fatalf("generated record %d is invalid: %v", i, ps)
		}
		recs[i].ReceivedAt = p.clock.Now()
	}
	for chunk := range slices.Chunk(recs, 2000) {
		if _, err := p.store.AppendUsage(ctx, chunk); err != nil {
			t.Fatal(err)
		}
	}
	p.clock.Advance(time.Hour)
	svc := newService(t, p, open(t), billingtest.SLA{})
	res, err := svc.Issue(ctx, billingtest.Period(), nil, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var invs []*billing.Invoice
	for _, r := range res {
		if r.Invoice != nil {
			invs = append(invs, r.Invoice)
		}
	}
	return svc, invs
}

// shipInBatches posts recs to the collector in up to six batches cut at
// random, so some tiny and some large, the clock a second later for each, and
// returns how many batches it took. Few batches, because each costs the
// store an fsync.
func shipInBatches(t *testing.T, rng *rand.Rand, p *platform, recs []usage.Record) int {
	t.Helper()
	bounds := []int{0, len(recs)}
	for range rng.IntN(6) {
		bounds = append(bounds, rng.IntN(len(recs)+1))
	}
	slices.Sort(bounds)
	n := 0
	for i := range len(bounds) - 1 {
		if batch := recs[bounds[i]:bounds[i+1]]; len(batch) > 0 {
			p.ship(t, batch)
			p.clock.Advance(time.Second)
			n++
		}
	}
	return n
}

// billed encodes what an invoice bills: lines, allowances, VAT, totals and
// annex, not the inputs, whose record counts and digests legitimately differ
// between representations of the same usage.
func billed(t *testing.T, inv *billing.Invoice) string {
	t.Helper()
	return string(mustJSON(t, struct {
		Lines      []billing.Line
		Allowances []billing.Allowance
		VAT        []billing.VATBreakdown
		Totals     billing.Totals
		Annex      []billing.AnnexRow
	}{inv.Lines, inv.Allowances, inv.VAT, inv.Totals, inv.Annex}))
}

// content renders what an invoice bills for people, one item a line, so
// that a difference reads as one.
func content(inv *billing.Invoice) string {
	var b strings.Builder
	for _, l := range inv.Lines {
		fmt.Fprintf(&b, "  line %s\n", lineText(l))
	}
	for _, a := range inv.Allowances {
		fmt.Fprintf(&b, "  allowance %s: %s %% of %s = %s\n", a.Period, a.Percent, a.Base.StringFixed(2), a.Amount.StringFixed(2))
	}
	for _, v := range inv.VAT {
		fmt.Fprintf(&b, "  VAT %s %s %% of %s = %s\n", v.Category, v.Rate, v.Taxable.StringFixed(2), v.Amount.StringFixed(2))
	}
	tot := inv.Totals
	fmt.Fprintf(&b, "  totals: lines %s, allowances %s, tax exclusive %s, VAT %s, payable %s\n", tot.Lines.StringFixed(2),
		tot.Allowances.StringFixed(2), tot.TaxExclusive.StringFixed(2), tot.VAT.StringFixed(2), tot.Payable.StringFixed(2))
	for _, r := range inv.Annex {
		fmt.Fprintf(&b, "  annex %s%s/%s %s: %s %s\n", adjusts(r.Adjusts), r.Project, r.Environment, r.Meter, r.Quantity.StringFixed(6), r.Unit)
	}
	return b.String()
}

func lineText(l billing.Line) string {
	return fmt.Sprintf("%s%s %s band %d: %s × %s = %s", adjusts(l.Adjusts), l.Meter, l.Class, l.Band, l.Quantity.StringFixed(6), l.UnitPrice.String(), l.Amount.StringFixed(2))
}

func adjusts(month string) string {
	if month == "" {
		return ""
	}
	return "(adjusts " + month + ") "
}

// Exact arithmetic, independent of the engine's: big.Rat rather than the
// decimal package it uses, so that a rounding mistake there is not repeated here.

func ratOf(d decimal.Decimal) *big.Rat { return d.Rat() }

// roundHalfUp rounds x to places decimals, halves away from zero (what
// "half-up" means for the negative amounts of credit notes too).
func roundHalfUp(x *big.Rat, places int) *big.Rat {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	n := new(big.Rat).Mul(new(big.Rat).Abs(x), new(big.Rat).SetInt(scale))
	n.Add(n, big.NewRat(1, 2))
	q := new(big.Int).Quo(n.Num(), n.Denom()) // n ≥ 0: truncation is the floor
	if x.Sign() < 0 {
		q.Neg(q)
	}
	return new(big.Rat).SetFrac(q, scale)
}

func sumRat(xs ...*big.Rat) *big.Rat {
	s := new(big.Rat)
	for _, x := range xs {
		s.Add(s, x)
	}
	return s
}

func eq(a, b *big.Rat) bool { return a.Cmp(b) == 0 }

func hasPlaces(d decimal.Decimal, places int) bool {
	return eq(ratOf(d), roundHalfUp(ratOf(d), places))
}

// checkSums asserts the arithmetic of DESIGN.md §5 on one document.
func checkSums(t *testing.T, inv *billing.Invoice) {
	t.Helper()
	who := inv.Customer.Tenant + " " + inv.Number
	lines, allowances := new(big.Rat), new(big.Rat)
	prod := map[string]*big.Rat{}
	for _, l := range inv.Lines {
		q, price, amount := ratOf(l.Quantity.Decimal), ratOf(l.UnitPrice.Decimal), ratOf(l.Amount.Decimal)
		if !hasPlaces(l.Quantity.Decimal, 6) {
			t.Errorf("%s: line %s: the quantity has more than 6 decimals", who, lineText(l))
		}
		if want := roundHalfUp(new(big.Rat).Mul(q, price), 2); !eq(amount, want) {
			t.Errorf("%s: line %s: the amount should be %s, round_half_up(quantity × unit price, 2)", who, lineText(l), want.FloatString(2))
		}
		lines.Add(lines, amount)
		if l.Class == ratecard.Prod {
			m := l.Adjusts
			if m == "" {
				m = inv.Period
			}
			if prod[m] == nil {
				prod[m] = new(big.Rat)
			}
			prod[m].Add(prod[m], amount)
		}
	}
	for _, a := range inv.Allowances {
		allowances.Add(allowances, ratOf(a.Amount.Decimal))
		if inv.Kind != billing.KindInvoice {
			continue
		}
		base := prod[a.Period]
		if base == nil {
			base = new(big.Rat)
		}
		credit := roundHalfUp(new(big.Rat).Mul(base, new(big.Rat).Quo(ratOf(a.Percent), big.NewRat(100, 1))), 2)
		if credit.Cmp(base) > 0 {
			credit = base
		}
		if !eq(ratOf(a.Base.Decimal), base) || !eq(ratOf(a.Amount.Decimal), new(big.Rat).Neg(credit)) {
			t.Errorf("%s: allowance %s: %s on a base of %s, want -%s on %s (%s %% of the production lines, at most all of them)",
				who, a.Period, a.Amount.StringFixed(2), a.Base.StringFixed(2), credit.FloatString(2), base.FloatString(2), a.Percent)
		}
	}
	tot := inv.Totals
	for _, c := range []struct {
		what      string
		got, want *big.Rat
	}{
		{"lines", ratOf(tot.Lines.Decimal), lines},
		{"allowances", ratOf(tot.Allowances.Decimal), allowances},
		{"tax exclusive = lines + allowances", ratOf(tot.TaxExclusive.Decimal), sumRat(ratOf(tot.Lines.Decimal), ratOf(tot.Allowances.Decimal))},
		{"payable = tax exclusive + VAT", ratOf(tot.Payable.Decimal), sumRat(ratOf(tot.TaxExclusive.Decimal), ratOf(tot.VAT.Decimal))},
	} {
		if !eq(c.got, c.want) {
			t.Errorf("%s: totals: %s: %s, want %s\n%s", who, c.what, c.got.FloatString(2), c.want.FloatString(2), content(inv))
		}
	}
	checkAnnex(t, inv)
}

// checkAnnex asserts that the annex breaks the lines down: per meter, class
// and month, its quantities add up to the lines' within their rounding (each
// row and line is rounded to 6 decimals on its own).
func checkAnnex(t *testing.T, inv *billing.Invoice) {
	t.Helper()
	type key struct {
		meter   ratecard.Meter
		class   ratecard.Class
		adjusts string
	}
	fromLines, fromAnnex, items := map[key]*big.Rat{}, map[key]*big.Rat{}, map[key]int64{}
	add := func(m map[key]*big.Rat, k key, q decimal.Decimal) {
		if m[k] == nil {
			m[k] = new(big.Rat)
		}
		m[k].Add(m[k], ratOf(q))
		items[k]++
	}
	for _, l := range inv.Lines {
		add(fromLines, key{l.Meter, l.Class, l.Adjusts}, l.Quantity.Decimal)
	}
	for _, r := range inv.Annex {
		add(fromAnnex, key{r.Meter, ratecard.ClassOf(r.Environment), r.Adjusts}, r.Quantity.Decimal)
	}
	for k := range items {
		// A meter used for nothing has an annex row of zero and no line.
		a, b := cmp.Or(fromLines[k], new(big.Rat)), cmp.Or(fromAnnex[k], new(big.Rat))
		diff := new(big.Rat).Abs(new(big.Rat).Sub(a, b))
		if diff.Cmp(big.NewRat(items[k], 2_000_000)) > 0 {
			t.Errorf("%s: %s %s %s: the lines bill %s, the annex breaks down %s\n%s", inv.Customer.Tenant, k.meter, k.class, k.adjusts,
				a.FloatString(6), b.FloatString(6), content(inv))
		}
	}
}

// checkVAT asserts that VAT is the rate applied once to the tax-exclusive
// total and rounded once, and reports whether rounding it per line and
// allowance would have given another amount.
func checkVAT(t *testing.T, inv *billing.Invoice) (perLineDiffers bool) {
	t.Helper()
	rate := new(big.Rat).Quo(ratOf(inv.Customer.VAT.Rate), big.NewRat(100, 1))
	taxable := ratOf(inv.Totals.TaxExclusive.Decimal)
	want := roundHalfUp(new(big.Rat).Mul(rate, taxable), 2)
	if got := ratOf(inv.Totals.VAT.Decimal); !eq(got, want) {
		t.Errorf("%s: VAT %s, want %s = round_half_up(%s %% × %s, 2)\n%s", inv.Customer.Tenant, inv.Totals.VAT.StringFixed(2),
			want.FloatString(2), inv.Customer.VAT.Rate, inv.Totals.TaxExclusive.StringFixed(2), content(inv))
	}
	if len(inv.VAT) != 1 {
		t.Errorf("%s: %d VAT breakdowns, want one (one category per institution)", inv.Customer.Tenant, len(inv.VAT))
	} else if v := inv.VAT[0]; v.Category != inv.Customer.VAT.Category || !v.Rate.Equal(inv.Customer.VAT.Rate) ||
		!eq(ratOf(v.Taxable.Decimal), taxable) || !eq(ratOf(v.Amount.Decimal), want) {
		t.Errorf("%s: VAT breakdown %s %s %% of %s = %s, want %s %s %% of %s = %s", inv.Customer.Tenant, v.Category, v.Rate,
			v.Taxable.StringFixed(2), v.Amount.StringFixed(2), inv.Customer.VAT.Category, inv.Customer.VAT.Rate, taxable.FloatString(2), want.FloatString(2))
	}
	perLine := new(big.Rat)
	for _, l := range inv.Lines {
		perLine.Add(perLine, roundHalfUp(new(big.Rat).Mul(rate, ratOf(l.Amount.Decimal)), 2))
	}
	for _, a := range inv.Allowances {
		perLine.Add(perLine, roundHalfUp(new(big.Rat).Mul(rate, ratOf(a.Amount.Decimal)), 2))
	}
	return !eq(perLine, want)
}

// checkSigns asserts that on an invoice only allowances are negative.
func checkSigns(t *testing.T, inv *billing.Invoice) {
	t.Helper()
	for _, l := range inv.Lines {
		if l.Quantity.IsNegative() || l.Amount.IsNegative() {
			t.Errorf("%s %s: line %s is negative", inv.Customer.Tenant, inv.Number, lineText(l))
		}
	}
	for _, a := range inv.Allowances {
		if a.Amount.IsPositive() || a.Base.IsNegative() {
			t.Errorf("%s %s: allowance %s of %s on a base of %s: want an amount ≤ 0 on a base ≥ 0", inv.Customer.Tenant, inv.Number,
				a.Period, a.Amount.StringFixed(2), a.Base.StringFixed(2))
		}
	}
	for _, r := range inv.Annex {
		if r.Quantity.IsNegative() {
			t.Errorf("%s %s: annex %s/%s %s: quantity %s is negative", inv.Customer.Tenant, inv.Number, r.Project, r.Environment, r.Meter, r.Quantity.StringFixed(6))
		}
	}
	tot := inv.Totals
	if tot.Allowances.IsPositive() {
		t.Errorf("%s %s: allowances total %s, want ≤ 0", inv.Customer.Tenant, inv.Number, tot.Allowances.StringFixed(2))
	}
	amounts := []billing.Money{tot.Lines, tot.TaxExclusive, tot.VAT, tot.Payable}
	for _, v := range inv.VAT {
		amounts = append(amounts, v.Taxable, v.Amount)
	}
	for _, m := range amounts {
		if m.IsNegative() {
			t.Errorf("%s %s: a negative amount on an invoice:\n%s", inv.Customer.Tenant, inv.Number, content(inv))
			break
		}
	}
}

// checkCreditNote asserts that a full credit note is the exact negation of
// its invoice. Its allowances, the negation of the invoice's, are the one
// positive amount: they take back a reduction, and only so do its lines and
// allowances still add up to its (negative) tax-exclusive total.
func checkCreditNote(t *testing.T, inv, cn *billing.Invoice) {
	t.Helper()
	who := inv.Customer.Tenant + " " + cn.Number
	neg := func(a, b decimal.Decimal) bool { return a.Equal(b.Neg()) }
	if cn.Kind != billing.KindCreditNote || cn.Refers != inv.Number {
		t.Errorf("%s: a %s referring to %q, want a credit note of %s", who, cn.Kind, cn.Refers, inv.Number)
	}
	if len(cn.Lines) != len(inv.Lines) || len(cn.Allowances) != len(inv.Allowances) || len(cn.VAT) != len(inv.VAT) || len(cn.Annex) != len(inv.Annex) {
		t.Fatalf("%s: %d lines, %d allowances, %d VAT, %d annex rows; the invoice has %d, %d, %d, %d", who, len(cn.Lines), len(cn.Allowances),
			len(cn.VAT), len(cn.Annex), len(inv.Lines), len(inv.Allowances), len(inv.VAT), len(inv.Annex))
	}
	for i, l := range cn.Lines {
		il := inv.Lines[i]
		if l.Quantity.IsPositive() || l.Amount.IsPositive() || !neg(l.Quantity.Decimal, il.Quantity.Decimal) || !neg(l.Amount.Decimal, il.Amount.Decimal) ||
			!l.UnitPrice.Equal(il.UnitPrice.Decimal) || l.Meter != il.Meter || l.Class != il.Class || l.Band != il.Band || l.Adjusts != il.Adjusts {
			t.Errorf("%s: line %s does not negate the invoice's %s", who, lineText(l), lineText(il))
		}
	}
	for i, a := range cn.Allowances {
		ia := inv.Allowances[i]
		if !neg(a.Amount.Decimal, ia.Amount.Decimal) || !neg(a.Base.Decimal, ia.Base.Decimal) || a.Amount.IsNegative() {
			t.Errorf("%s: allowance %s on %s does not negate the invoice's %s on %s", who, a.Amount.StringFixed(2), a.Base.StringFixed(2),
				ia.Amount.StringFixed(2), ia.Base.StringFixed(2))
		}
	}
	for i, v := range cn.VAT {
		iv := inv.VAT[i]
		if v.Amount.IsPositive() || v.Taxable.IsPositive() || !neg(v.Amount.Decimal, iv.Amount.Decimal) || !neg(v.Taxable.Decimal, iv.Taxable.Decimal) {
			t.Errorf("%s: VAT %s on %s does not negate the invoice's %s on %s", who, v.Amount.StringFixed(2), v.Taxable.StringFixed(2),
				iv.Amount.StringFixed(2), iv.Taxable.StringFixed(2))
		}
	}
	for i, r := range cn.Annex {
		if ir := inv.Annex[i]; r.Quantity.IsPositive() || !neg(r.Quantity.Decimal, ir.Quantity.Decimal) {
			t.Errorf("%s: annex %s/%s %s: %s does not negate the invoice's %s", who, r.Project, r.Environment, r.Meter,
				r.Quantity.StringFixed(6), ir.Quantity.StringFixed(6))
		}
	}
	ct, it := cn.Totals, inv.Totals
	for _, c := range []struct {
		what   string
		cn, in billing.Money
	}{{"lines", ct.Lines, it.Lines}, {"allowances", ct.Allowances, it.Allowances}, {"tax exclusive", ct.TaxExclusive, it.TaxExclusive},
		{"VAT", ct.VAT, it.VAT}, {"payable", ct.Payable, it.Payable}} {
		if !neg(c.cn.Decimal, c.in.Decimal) {
			t.Errorf("%s: %s %s, want %s negated", who, c.what, c.cn.StringFixed(2), c.in.StringFixed(2))
		}
		if c.what != "allowances" && c.cn.IsPositive() {
			t.Errorf("%s: %s %s is positive on a credit note", who, c.what, c.cn.StringFixed(2))
		}
	}
}

// The generator.

type source struct {
	tenant, project, app string
	env                  usage.Environment
	container, run       string
	volume               string
}

func src(tenant, project, app string, env usage.Environment, container string) source {
	return source{tenant: tenant, project: project, app: app, env: env, container: container, run: "r-" + container + "-1"}
}

func rec(s source, m usage.Meter, ws, we time.Time, q int64) usage.Record {
	r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: s.tenant, Project: s.project, App: s.app, Environment: s.env,
		ContainerID: s.container, RunID: s.run, Volume: s.volume, Node: "node-1", Meter: m, Quantity: q,
		WindowStart: ws.UTC(), WindowEnd: we.UTC()}
	r.SetID()
	return r
}

type gen struct {
	rng  *rand.Rand
	recs []usage.Record
}

// between returns an integer in [lo, hi].
func (g *gen) between(lo, hi int64) int64 { return lo + g.rng.Int64N(hi-lo+1) }

func (g *gen) seconds(lo, hi int64) time.Duration {
	return time.Duration(g.between(lo, hi)) * time.Second
}

func (g *gen) env() usage.Environment {
	if g.rng.IntN(2) == 0 {
		return usage.EnvProd
	}
	return []usage.Environment{usage.EnvDev, usage.EnvTest, usage.EnvAcc}[g.rng.IntN(3)]
}

// start picks when a run or volume starts: often close to an instant where
// the price or the month changes, else anywhere in November.
func (g *gen) start() time.Time {
	switch g.rng.IntN(8) {
	case 0, 1:
		return v2Start.Add(g.seconds(-6*3600, 6*3600))
	case 2:
		return novStart.Add(g.seconds(-3*3600, 600))
	case 3:
		return decStart.Add(-g.seconds(1, 6*3600))
	}
	return novStart.Add(g.seconds(0, int64(decStart.Sub(novStart)/time.Second)-3600))
}

// windows cuts [from, to) as an agent does: mostly at the hour marks it
// samples on (Brussels midnight is one), sometimes at an engine event.
func (g *gen) windows(from, to time.Time) [][2]time.Time {
	var out [][2]time.Time
	for ws := from; ws.Before(to); {
		we := ws.Truncate(time.Hour).Add(time.Hour)
		if g.rng.IntN(10) < 3 {
			we = ws.Add(g.seconds(1, 3600))
		}
		if we.After(to) {
			we = to
		}
		out = append(out, [2]time.Time{ws, we})
		ws = we
	}
	return out
}

type container struct {
	source
	cpuMillis, limitMiB, txPerHour int64
	used, seconds                  bool
}

func (g *gen) container(tenant string, i int, kind string) container {
	c := container{
		source:    src(tenant, []string{"portal", "batch"}[g.rng.IntN(2)], []string{"web", "worker"}[g.rng.IntN(2)], g.env(), fmt.Sprintf("c-%s-%s-%d", tenant, kind, i)),
		cpuMillis: g.between(100, 4000), limitMiB: g.between(256, 8192),
		used: g.rng.IntN(3) == 0, seconds: g.rng.IntN(3) == 0,
	}
	if g.rng.IntN(3) == 0 {
		c.txPerHour = g.between(5, 40) * 1_000_000_000 // enough, in a few hours, to cross the 100 GB tier
	} else {
		c.txPerHour = g.between(0, 50_000_000)
	}
	return c
}

// run emits a container's records over [from, to) in windows.
func (g *gen) run(c container, wins [][2]time.Time) {
	for _, w := range wins {
		secs := int64(w[1].Sub(w[0]) / time.Second)
		g.recs = append(g.recs,
			rec(c.source, usage.MeterCPU, w[0], w[1], g.between(0, c.cpuMillis*secs*1_000_000)),
			rec(c.source, usage.MeterMemoryLimit, w[0], w[1], c.limitMiB<<20*secs))
		if c.txPerHour > 0 {
			g.recs = append(g.recs, rec(c.source, usage.MeterNetTx, w[0], w[1], g.between(0, c.txPerHour*secs/3600)))
		}
		// Meters the rate card does not bill: they must change nothing.
		if c.used {
			g.recs = append(g.recs, rec(c.source, usage.MeterMemory, w[0], w[1], g.between(0, c.limitMiB<<20*secs)))
		}
		if c.seconds {
			g.recs = append(g.recs, rec(c.source, usage.MeterContainerSeconds, w[0], w[1], secs))
		}
	}
}

// pieces cuts [from, to) at up to n−1 random whole seconds.
func (g *gen) pieces(from, to time.Time, n int) [][2]time.Time {
	span := int64(to.Sub(from) / time.Second)
	cuts := map[int64]bool{}
	for range n - 1 {
		if span > 1 {
			cuts[g.between(1, span-1)] = true
		}
	}
	offsets := slices.Sorted(maps.Keys(cuts))
	var out [][2]time.Time
	ws := from
	for _, o := range append(offsets, span) {
		we := from.Add(time.Duration(o) * time.Second)
		out = append(out, [2]time.Time{ws, we})
		ws = we
	}
	return out
}

// generate returns a random month of usage for one or both institutions.
func generate(rng *rand.Rand) []usage.Record {
	g := &gen{rng: rng}
	tenants := [][]string{{"caami"}, {"ona"}, {"caami", "ona"}, {"caami", "ona"}}[rng.IntN(4)]
	for _, tenant := range tenants {
		// Long runs.
		for i := range 1 + rng.IntN(3) {
			from := g.start()
			g.run(g.container(tenant, i, "svc"), g.windows(from, from.Add(g.seconds(3600, 24*3600))))
		}
		// A run that started in October and stops just into November, windows
		// cut at the hour marks: its November part is shorter than the minimum
		// run duration, the run is not.
		if rng.IntN(3) == 0 {
			from := novStart.Add(-g.seconds(3600, 3*3600))
			g.run(g.container(tenant, 0, "cross"), g.windows(from, novStart.Add(g.seconds(1, 59))))
		}
		// Short jobs, most shorter than the minimum run duration, near the
		// instants that matter.
		for i := range rng.IntN(5) {
			var from time.Time
			switch rng.IntN(4) {
			case 0:
				from = v2Start.Add(-g.seconds(0, 70))
			case 1:
				from = novStart.Add(-g.seconds(0, 70))
			case 2:
				from = decStart.Add(-g.seconds(0, 70))
			default:
				from = novStart.Add(g.seconds(0, int64(decStart.Sub(novStart)/time.Second)-3600))
			}
			dur := g.seconds(1, 59)
			if rng.IntN(4) == 0 {
				dur = g.seconds(60, 150)
			}
			c := g.container(tenant, i, "job")
			c.used, c.seconds = false, rng.IntN(2) == 0
			g.run(c, g.pieces(from, from.Add(dur), 1+rng.IntN(3)))
		}
		// Volumes.
		for i := range rng.IntN(3) {
			v := source{tenant: tenant, project: "portal", app: "db", env: g.env(), volume: fmt.Sprintf("v-%s-%d", tenant, i)}
			size := g.between(1, 500) << 30
			from := g.start()
			for _, w := range g.windows(from, from.Add(g.seconds(3600, 40*3600))) {
				g.recs = append(g.recs, rec(v, usage.MeterStorageByteSeconds, w[0], w[1], size*int64(w[1].Sub(w[0])/time.Second)))
			}
		}
	}
	return g.recs
}

// splitAll returns the same usage in other windows: each record cut into up
// to four, the pieces' quantities adding up to its own. A cut never falls on
// or after a month start or v2's start inside the window: the window's start
// decides both, and a piece starting after them would legitimately be
// billed elsewhere. A run's windows still cover the same time, so its
// duration, which the minimum run duration compares, is kept.
func splitAll(rng *rand.Rand, recs []usage.Record) []usage.Record {
	out := make([]usage.Record, 0, 2*len(recs))
	for _, r := range recs {
		out = append(out, split(rng, r)...)
	}
	return out
}

func split(rng *rand.Rand, r usage.Record) []usage.Record {
	k := 1
	if rng.IntN(2) == 0 {
		k = 2 + rng.IntN(3)
	}
	limit := r.WindowEnd
	for _, b := range []time.Time{novStart, v2Start, decStart} {
		if b.After(r.WindowStart) && b.Before(limit) {
			limit = b
		}
	}
	span := int64(limit.Sub(r.WindowStart) / time.Second)
	if span < 2 || k == 1 {
		return []usage.Record{r}
	}
	cuts := map[int64]bool{}
	for range k - 1 {
		var o int64
		edge := min(59, span-1)
		switch rng.IntN(6) {
		case 0: // a piece shorter than the minimum run duration at the start…
			o = 1 + rng.Int64N(edge)
		case 1: // …or at the end, where it meets the next window
			o = span - 1 - rng.Int64N(edge)
		default:
			o = 1 + rng.Int64N(span-1)
		}
		cuts[o] = true
	}
	offsets := slices.Sorted(maps.Keys(cuts))
	total := int64(r.WindowEnd.Sub(r.WindowStart) / time.Second)
	offsets = append(offsets, total)

	// Quantities: any split adds up, but container seconds must fit their
	// window, so those follow the pieces' durations.
	qs := make([]int64, len(offsets))
	if r.Meter == usage.MeterContainerSeconds {
		prev := int64(0)
		for i, o := range offsets {
			at := new(big.Int).Div(new(big.Int).Mul(big.NewInt(r.Quantity), big.NewInt(o)), big.NewInt(total)).Int64()
			qs[i], prev = at-prev, at
		}
	} else {
		marks := make([]int64, len(offsets)-1)
		for i := range marks {
			marks[i] = rng.Int64N(r.Quantity + 1)
		}
		slices.Sort(marks)
		prev := int64(0)
		for i, m := range append(marks, r.Quantity) {
			qs[i], prev = m-prev, m
		}
	}
	out := make([]usage.Record, len(offsets))
	ws := r.WindowStart
	for i, o := range offsets {
		p := r
		p.WindowStart, p.WindowEnd, p.Quantity = ws, r.WindowStart.Add(time.Duration(o)*time.Second), qs[i]
		p.SetID()
		out[i] = p
		ws = p.WindowEnd
	}
	return out
}
