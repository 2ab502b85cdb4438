package billing_test

import (
	"testing"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/usage"
)

func money(s string) billing.Money { return billing.Money{Decimal: decimal.RequireFromString(s)} }

func quantity(s string) billing.Quantity {
	return billing.Quantity{Decimal: decimal.RequireFromString(s)}
}

// sums adds up the shares' columns.
func sums(shares []billing.ScopeCost) (lines, credit, vat, payable decimal.Decimal) {
	for _, s := range shares {
		lines, credit, vat, payable = lines.Add(s.Lines.Decimal), credit.Add(s.Credit.Decimal), vat.Add(s.VAT.Decimal), payable.Add(s.Payable.Decimal)
	}
	return
}

func TestSharesAddUpToTheInvoicesTotalsToTheCent(t *testing.T) {
	for _, number := range []string{"PM-2026-000001", "PM-2026-000002"} {
		inv := billingtest.Issued(t, number)
		shares, err := billing.Shares(inv)
		if err != nil {
			t.Fatalf("%s: %v", number, err)
		}
		lines, credit, vat, payable := sums(shares)
		tot := inv.Totals
		if !lines.Equal(tot.Lines.Decimal) || !credit.Equal(tot.Allowances.Decimal) || !vat.Equal(tot.VAT.Decimal) || !payable.Equal(tot.Payable.Decimal) {
			t.Errorf("%s: shares add up to lines %s, credit %s, VAT %s, payable %s; the totals are %+v", number, lines, credit, vat, payable, tot)
		}
		for _, s := range shares {
			if !s.Lines.Add(s.Credit.Decimal).Add(s.VAT.Decimal).Equal(s.Payable.Decimal) {
				t.Errorf("%s: %s/%s pays %s, not its lines, credit and VAT", number, s.Project, s.Environment, s.Payable)
			}
		}
	}
}

func TestAFullCreditNotesSharesAreItsInvoicesNegated(t *testing.T) {
	inv := billingtest.Issued(t, "PM-2026-000001")
	credit := billingtest.CreditNote(t, inv, "PMC-2026-000001", "2026-12-10", "", "billed to the wrong institution")
	want, err := billing.Shares(inv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := billing.Shares(credit)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d shares of the credit note, %d of the invoice", len(got), len(want))
	}
	for i := range want {
		if got[i].Project != want[i].Project || got[i].Environment != want[i].Environment || !got[i].Payable.Equal(want[i].Payable.Neg()) ||
			!got[i].Credit.Equal(want[i].Credit.Neg()) || !got[i].VAT.Equal(want[i].VAT.Neg()) {
			t.Errorf("share %d: credit note %+v, invoice %+v", i, got[i], want[i])
		}
	}
}

func TestSharesFollowQuantitiesAndTheCreditFallsOnProductionOnly(t *testing.T) {
	inv := &billing.Invoice{Period: "2026-11",
		Lines: []billing.Line{
			{Meter: ratecard.CPU, Class: ratecard.Prod, Amount: money("10.00")},
			{Meter: ratecard.CPU, Class: ratecard.Prod, Amount: money("0.01"), Version: "v2"},
			{Meter: ratecard.Memory, Class: ratecard.NonProd, Amount: money("5.00")},
		},
		Allowances: []billing.Allowance{{Period: "2026-11", Amount: money("-1.00")}},
		Annex: []billing.AnnexRow{
			{Project: "claims", Environment: usage.EnvProd, Meter: ratecard.CPU, Quantity: quantity("1")},
			{Project: "portal", Environment: usage.EnvProd, Meter: ratecard.CPU, Quantity: quantity("2")},
			{Project: "portal", Environment: usage.EnvDev, Meter: ratecard.Memory, Quantity: quantity("7")},
		},
		Totals: billing.Totals{Lines: money("15.01"), Allowances: money("-1.00"), TaxExclusive: money("14.01"), VAT: money("2.94"), Payable: money("16.95")},
	}
	shares, err := billing.Shares(inv)
	if err != nil {
		t.Fatal(err)
	}
	// CPU: 10.01 a third and two thirds, 3.3367 and 6.6733: rounded down
	// 3.33 and 6.67, and the cent left over to the larger remainder (in
	// cents .67 against .33): 3.34 and 6.67. The credit: 1.00 by 3.34 : 6.67.
	// VAT: 2.94 by taxable.
	want := []billing.ScopeCost{
		{Project: "claims", Environment: usage.EnvProd, Lines: money("3.34"), Credit: money("-0.33"), VAT: money("0.63"), Payable: money("3.64")},
		{Project: "portal", Environment: usage.EnvDev, Lines: money("5.00"), Credit: money("0"), VAT: money("1.05"), Payable: money("6.05")},
		{Project: "portal", Environment: usage.EnvProd, Lines: money("6.67"), Credit: money("-0.67"), VAT: money("1.26"), Payable: money("7.26")},
	}
	if len(shares) != len(want) {
		t.Fatalf("%d shares, want %d: %+v", len(shares), len(want), shares)
	}
	for i, w := range want {
		g := shares[i]
		if g.Project != w.Project || g.Environment != w.Environment || !g.Lines.Equal(w.Lines.Decimal) || !g.Credit.Equal(w.Credit.Decimal) ||
			!g.VAT.Equal(w.VAT.Decimal) || !g.Payable.Equal(w.Payable.Decimal) {
			t.Errorf("share %d = %s/%s lines %s credit %s VAT %s payable %s; want %s/%s %s %s %s %s", i, g.Project, g.Environment,
				g.Lines, g.Credit, g.VAT, g.Payable, w.Project, w.Environment, w.Lines, w.Credit, w.VAT, w.Payable)
		}
	}

	t.Run("a line no annex row can carry is an error, not a lost amount", func(t *testing.T) {
		bad := *inv
		bad.Lines = append(bad.Lines, billing.Line{Meter: ratecard.Storage, Class: ratecard.Prod, Amount: money("1.00")})
		if _, err := billing.Shares(&bad); err == nil {
			t.Error("Shares of a storage line without storage in the annex: no error")
		}
	})
}
