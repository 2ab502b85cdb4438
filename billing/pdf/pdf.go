// Package pdf renders an invoice or a credit note (billing.Invoice) as the A4
// PDF an institution reads: the seller and the institution, the lines per
// environment class and meter, the SLA figures and credit, the VAT breakdown
// and totals, how to pay, and an annex of the usage per project and
// environment.
//
// The rendering is byte-identical for the same document: its dates come from
// the document (never the clock), and nothing depends on map order. An issued
// invoice may be rendered again months later, and must be the same file.
//
// Text uses the PDF core font Helvetica through the Windows-1252 encoding,
// which covers the accents of French, Dutch and German names and the euro
// sign; a character outside it prints as "?".
package pdf

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-pdf/fpdf"
	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/sla/credit"
)

// Page geometry, in millimetres: A4 portrait.
const (
	pageW     = 210.0
	pageH     = 297.0
	marginX   = 18.0
	marginTop = 14.0
	// marginBottom leaves room for the footer.
	marginBottom = 20.0
	contentW     = pageW - 2*marginX
	right        = pageW - marginX
	rowH         = 5.0
)

type rgb struct{ r, g, b int }

var (
	accent = rgb{23, 55, 94}
	ink    = rgb{33, 37, 41}
	muted  = rgb{108, 117, 125}
	rule   = rgb{205, 211, 219}
	tint   = rgb{236, 241, 247}
	warn   = rgb{168, 36, 36}
)

// Render writes inv as a PDF to w.
func Render(w io.Writer, inv *billing.Invoice) error {
	// The footer's "page n of N" is right-aligned, so N must be known while
	// the pages are drawn: a first pass counts them. (fpdf's {nb} alias is
	// replaced after layout, which would shift the right-aligned text by the
	// alias's width.)
	first, err := layout(inv, 0)
	if err != nil {
		return err
	}
	f, err := layout(inv, first.PageCount())
	if err != nil {
		return err
	}
	if err := f.Output(w); err != nil {
		return fmt.Errorf("pdf: write %s: %w", documentName(inv), err)
	}
	return nil
}

// renderer draws one document.
type renderer struct {
	f   *fpdf.Fpdf
	tr  func(string) string
	inv *billing.Invoice
	// pages is the document's page count, 0 on the counting pass.
	pages int
	// table is the table being drawn, whose header a page break repeats,
	// and group the heading of its group of rows being drawn, repeated too.
	table []column
	group string
}

// column is a table column.
type column struct {
	title string
	w     float64
	align string
}

// layout draws inv on a new document, numbering pages "of pages".
func layout(inv *billing.Invoice, pages int) (*fpdf.Fpdf, error) {
	f := fpdf.New("P", "mm", "A4", "")
	r := &renderer{f: f, tr: cp1252(f.UnicodeTranslatorFromDescriptor("")), inv: inv, pages: pages}
	r.metadata()
	f.SetMargins(marginX, marginTop, marginX)
	// The sections break pages themselves (ensure), so that rows, headings and
	// blocks are never split; the automatic break only guards the margin.
	f.SetAutoPageBreak(true, marginBottom)
	f.SetHeaderFunc(r.pageHeader)
	f.SetFooterFunc(r.pageFooter)
	f.AddPage()
	r.header()
	r.creditNotice()
	r.lines()
	r.totals()
	r.payment()
	r.sla()
	r.annex()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("pdf: lay out %s: %w", documentName(inv), err)
	}
	return f, nil
}

// metadata fixes everything fpdf would otherwise take from the clock or from
// map order, so that a re-render gives the same bytes. (fpdf writes no
// document /ID, which would vary, unless the document is encrypted.)
func (r *renderer) metadata() {
	f, inv := r.f, r.inv
	t := documentTime(inv)
	f.SetCreationDate(t)
	f.SetModificationDate(t)
	f.SetCatalogSort(true)
	f.SetProducer("paasmeter", false)
	f.SetCreator("paasmeter billing/pdf", false)
	f.SetAuthor(inv.Seller.Name, true)
	f.SetTitle(documentName(inv), true)
	f.SetSubject(fmt.Sprintf("%s for %s, %s", documentName(inv), customerName(inv), monthName(inv.Period)), true)
	f.SetLang("en")
}

// documentTime is the issue date at midnight UTC, or the Unix epoch for a
// draft, which has none: the PDF's dates must not depend on when it is rendered.
func documentTime(inv *billing.Invoice) time.Time {
	t, err := time.Parse(time.DateOnly, inv.IssueDate)
	if err != nil {
		return time.Unix(0, 0).UTC()
	}
	return t
}

// documentName is "Invoice PM-2026-000001", or "Draft invoice caami 2026-11".
func documentName(inv *billing.Invoice) string {
	if inv.Number == "" {
		return fmt.Sprintf("Draft %s %s %s", strings.ToLower(title(inv)), inv.Customer.Tenant, inv.Period)
	}
	return title(inv) + " " + inv.Number
}

func title(inv *billing.Invoice) string {
	if inv.Kind == billing.KindCreditNote {
		return "Credit note"
	}
	return "Invoice"
}

func customerName(inv *billing.Invoice) string {
	return cmp.Or(inv.Customer.Party.LegalName, inv.Customer.Name, inv.Customer.Tenant)
}

// cp1252 wraps fpdf's Windows-1252 translator, which turns a character the
// encoding lacks into ".": in a number or an amount that reads as a decimal
// point, so such a character becomes "?" instead.
func cp1252(tr func(string) string) func(string) string {
	return func(s string) string {
		var b strings.Builder
		for _, c := range s {
			if c >= 0x80 && tr(string(c)) == "." {
				c = '?'
			}
			b.WriteRune(c)
		}
		return tr(b.String())
	}
}

// style sets the font and text colour.
func (r *renderer) style(style string, size float64, c rgb) {
	r.f.SetFont("Helvetica", style, size)
	r.f.SetTextColor(c.r, c.g, c.b)
}

// put writes s in a w×h cell at (x, y).
func (r *renderer) put(x, y, w, h float64, s, align string) {
	r.f.SetXY(x, y)
	r.f.CellFormat(w, h, r.tr(s), "", 0, align, false, 0, "")
}

// paragraph writes s wrapped to w at the current position.
func (r *renderer) paragraph(w, h float64, s string) {
	r.f.MultiCell(w, h, r.tr(s), "", "L", false)
}

// paragraphHeight is the height paragraph will take.
func (r *renderer) paragraphHeight(w, h float64, s string) float64 {
	return float64(len(r.f.SplitLines([]byte(r.tr(s)), w))) * h
}

// hrule draws a horizontal rule across the content at y.
func (r *renderer) hrule(y float64, c rgb, width float64) {
	r.f.SetDrawColor(c.r, c.g, c.b)
	r.f.SetLineWidth(width)
	r.f.Line(marginX, y, right, y)
}

// ensure starts a new page unless h fits above the bottom margin; a table
// being drawn gets its header again.
func (r *renderer) ensure(h float64) {
	if r.f.GetY()+h <= pageH-marginBottom {
		return
	}
	r.f.AddPage()
	if r.table != nil {
		r.tableHeader()
	}
	if r.group != "" {
		r.groupHeading(r.group + " (continued)")
	}
}

// pageHeader is fpdf's header callback: pages after the first name the
// document, since they may be read apart from it.
func (r *renderer) pageHeader() {
	if r.f.PageNo() == 1 {
		return
	}
	r.style("", 8, muted)
	r.put(marginX, 9, contentW/2, 4, r.inv.Seller.Name, "L")
	r.put(marginX+contentW/2, 9, contentW/2, 4, documentName(r.inv)+" · "+monthName(r.inv.Period), "R")
	r.hrule(14, rule, 0.2)
	r.f.SetXY(marginX, 19)
}

// pageFooter is fpdf's footer callback.
func (r *renderer) pageFooter() {
	y := pageH - 13
	r.hrule(y, rule, 0.2)
	r.style("", 7.5, muted)
	left := documentName(r.inv)
	if ref := r.inv.Customer.BuyerReference; ref != "" {
		left += " · your reference " + ref
	}
	r.put(marginX, y+1.5, contentW*0.75, 4, left, "L")
	r.put(marginX+contentW*0.75, y+1.5, contentW*0.25, 4, fmt.Sprintf("page %d of %d", r.f.PageNo(), r.pages), "R")
}

// header draws the first page's top: the seller and the title, the
// document's numbers and dates, and the institution.
func (r *renderer) header() {
	f, inv := r.f, r.inv
	top := f.GetY() + 2

	// The seller, top left.
	r.style("B", 15, accent)
	r.put(marginX, top, 110, 7, inv.Seller.Name, "L")
	y := top + 8
	r.style("", 8.5, ink)
	for _, s := range partyLines(inv.Seller.Party, inv.Seller.Name, false) {
		r.put(marginX, y, 110, 4, s, "L")
		y += 4
	}
	sellerEnd := y

	// The title and the document's data, top right.
	r.style("B", 24, accent)
	r.put(right-80, top-1, 80, 10, title(inv), "R")
	y = top + 11
	if inv.Number == "" || inv.Provisional {
		r.style("B", 9, warn)
		label := "DRAFT · not for payment"
		if inv.Provisional {
			label = "DRAFT · provisional: records may still arrive"
		}
		r.put(right-80, y, 80, 4.5, label, "R")
		y += 6
	}
	meta := [][2]string{
		{"Number", cmp.Or(inv.Number, "draft")},
		{"Issue date", longDate(inv.IssueDate)},
	}
	if inv.Kind == billing.KindCreditNote {
		meta = append(meta, [2]string{"Corrects invoice", inv.Refers})
	} else {
		meta = append(meta, [2]string{"Due date", longDate(inv.DueDate)})
	}
	meta = append(meta, [2]string{"Period", periodText(inv)}, [2]string{"Your reference", cmp.Or(inv.Customer.BuyerReference, "—")})
	metaX, metaW := right-74.0, 74.0
	f.SetFillColor(tint.r, tint.g, tint.b)
	f.Rect(metaX, y, metaW, float64(len(meta))*5.2+3, "F")
	y += 1.5
	for _, kv := range meta {
		r.style("", 8.5, muted)
		r.put(metaX+3, y, 28, 5.2, kv[0], "L")
		r.style("B", 8.5, ink)
		r.put(metaX+30, y, metaW-33, 5.2, kv[1], "R")
		y += 5.2
	}
	metaEnd := y + 1.5

	// The institution, below the seller.
	y = sellerEnd + 5
	r.style("B", 7.5, muted)
	r.put(marginX, y, 100, 4, "BILLED TO", "L")
	y += 5
	r.style("B", 10.5, ink)
	f.SetXY(marginX, y)
	nameW := metaX - marginX - 4
	r.paragraph(nameW, 5, customerName(inv))
	y = f.GetY() + 0.5
	r.style("", 8.5, ink)
	for _, s := range partyLines(inv.Customer.Party, customerName(inv), true) {
		r.put(marginX, y, nameW, 4, s, "L")
		y += 4
	}
	f.SetY(max(y, metaEnd) + 5)
}

// partyLines are a party's address and identifiers, without its name; the
// legal name comes first when it differs from name. withEndpoint adds the
// Peppol address, which the institution's invoice-receiving system uses.
func partyLines(p institution.Party, name string, withEndpoint bool) []string {
	var out []string
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if p.LegalName != name {
		add(p.LegalName)
	}
	add(p.Address.Street)
	add(p.Address.PostalCode + " " + p.Address.City)
	add(countryName(p.Address.Country))
	var ids []string
	if p.VATID != "" {
		ids = append(ids, "VAT "+p.VATID)
	}
	if p.CompanyID != "" {
		ids = append(ids, "Enterprise no. "+p.CompanyID)
	}
	add(strings.Join(ids, " · "))
	if withEndpoint && p.EndpointID != "" {
		add("Peppol " + strings.TrimPrefix(p.EndpointScheme+":"+p.EndpointID, ":"))
	}
	add(p.Email)
	return out
}

// countryName spells out the country the platform's institutions are in and
// leaves any other ISO 3166 code as it is.
func countryName(code string) string {
	if code == "BE" {
		return "Belgium"
	}
	return code
}

// creditNotice says, on a credit note, which invoice it corrects and why.
func (r *renderer) creditNotice() {
	inv := r.inv
	if inv.Kind != billing.KindCreditNote {
		return
	}
	text := fmt.Sprintf("This credit note corrects invoice %s (%s).", cmp.Or(inv.Refers, "—"), monthName(inv.Period))
	if inv.Reason != "" {
		text += " Reason: " + inv.Reason + "."
	}
	r.style("", 9, ink)
	h := r.paragraphHeight(contentW-8, 4.6, text) + 5
	y := r.f.GetY()
	r.f.SetFillColor(tint.r, tint.g, tint.b)
	r.f.Rect(marginX, y, contentW, h, "F")
	r.f.SetFillColor(accent.r, accent.g, accent.b)
	r.f.Rect(marginX, y, 1.2, h, "F")
	r.f.SetXY(marginX+4, y+2.5)
	r.paragraph(contentW-8, 4.6, text)
	r.f.SetY(y + h + 5)
}

// section writes a section title, kept on the page with at least next mm
// of what follows it.
func (r *renderer) section(title string, next float64) {
	r.ensure(9 + next)
	y := r.f.GetY()
	r.style("B", 10.5, accent)
	r.put(marginX, y, contentW, 6, title, "L")
	r.f.SetY(y + 7.5)
}

// beginTable starts a table: its header now and after every page break
// until endTable.
func (r *renderer) beginTable(cols []column) {
	r.table = cols
	r.ensure(3 * rowH)
	r.tableHeader()
}

func (r *renderer) endTable() { r.table, r.group = nil, "" }

func (r *renderer) tableHeader() {
	f := r.f
	y := f.GetY()
	f.SetFillColor(accent.r, accent.g, accent.b)
	f.Rect(marginX, y, contentW, rowH+0.6, "F")
	r.style("B", 8, rgb{255, 255, 255})
	x := marginX
	for _, c := range r.table {
		r.put(x, y+0.3, c.w, rowH, c.title, c.align)
		x += c.w
	}
	f.SetY(y + rowH + 0.6)
}

// row writes a table row, bold or not, with a light rule under it.
func (r *renderer) row(bold bool, cells ...string) {
	r.ensure(rowH)
	// After ensure: a page break draws headers in their own styles.
	if bold {
		r.style("B", 8.5, ink)
	} else {
		r.style("", 8.5, ink)
	}
	y := r.f.GetY()
	x := marginX
	for i, c := range r.table {
		r.put(x, y, c.w, rowH, cells[i], c.align)
		x += c.w
	}
	r.f.SetDrawColor(rule.r, rule.g, rule.b)
	r.f.SetLineWidth(0.1)
	r.f.Line(marginX, y+rowH, right, y+rowH)
	r.f.SetY(y + rowH)
}

// beginGroup starts a group of rows under a heading, kept with the first row.
func (r *renderer) beginGroup(heading string) {
	r.group = ""
	r.ensure(2 * rowH)
	r.group = heading
	r.groupHeading(heading)
}

// groupHeading writes a heading row across the table.
func (r *renderer) groupHeading(s string) {
	y := r.f.GetY()
	r.style("B", 8.5, accent)
	r.put(marginX, y+0.8, contentW, rowH, s, "L")
	r.f.SetY(y + rowH + 0.8)
}

// lines draws the invoice lines, grouped by the month they bill and the
// environment class, each group with its subtotal (the production subtotal
// is what the SLA credit is a percentage of).
func (r *renderer) lines() {
	inv := r.inv
	r.section(title(inv)+" lines", 3*rowH)
	r.style("", 8, muted)
	r.put(marginX, r.f.GetY()-1.5, contentW, 4, "Quantities in billing units; prices and amounts in "+inv.Currency+", excluding VAT.", "L")
	r.f.SetY(r.f.GetY() + 4)
	r.beginTable([]column{
		{"Description", 62, "L"}, {"Tier", 12, "C"}, {"Quantity", 31, "R"},
		{"Unit", 21, "L"}, {"Unit price", 24, "R"}, {"Amount", 24, "R"},
	})
	for i := 0; i < len(inv.Lines); {
		first := inv.Lines[i]
		j := i
		sum := decimal.Zero
		for ; j < len(inv.Lines) && inv.Lines[j].Class == first.Class && inv.Lines[j].Adjusts == first.Adjusts; j++ {
			sum = sum.Add(inv.Lines[j].Amount.Decimal)
		}
		r.beginGroup(groupTitle(inv, first))
		for _, l := range inv.Lines[i:j] {
			desc := meterName(l.Meter)
			if v := l.VersionText(); v != "" {
				desc += " · rate " + v
			}
			if l.Adjusts != "" {
				desc += " · adjusts " + l.Adjusts
			}
			tier := ""
			if l.Tier != nil { // a flat price has no tier
				tier = l.Tier.String()
			}
			r.row(false, desc, tier, group(l.Quantity.StringFixed(6)), cmp.Or(string(l.Unit), "—"), group(l.UnitPrice.String()), group(l.Amount.StringFixed(2)))
		}
		if j-i > 1 {
			r.row(true, "Subtotal "+strings.ToLower(className(first.Class)), "", "", "", "", group(sum.StringFixed(2)))
		}
		i = j
	}
	if len(inv.Lines) == 0 {
		r.row(false, "No lines.", "", "", "", "", "")
	}
	r.endTable()
	r.f.SetY(r.f.GetY() + 5)
}

// groupTitle names the month and class a group of lines bills.
func groupTitle(inv *billing.Invoice, l billing.Line) string {
	if l.Class == "" {
		return "Correction of invoice " + cmp.Or(inv.Refers, "—")
	}
	if l.Adjusts != "" {
		return fmt.Sprintf("%s · adjustment: records of %s received after its invoice", className(l.Class), monthName(l.Adjusts))
	}
	return className(l.Class) + " · " + monthName(inv.Period)
}

func className(c ratecard.Class) string {
	switch c {
	case ratecard.Prod:
		return "Production"
	case ratecard.NonProd:
		return "Non-production (dev, test, acc)"
	case "":
		return "Correction"
	}
	return string(c)
}

// meterName is what a reader calls the meter.
func meterName(m ratecard.Meter) string {
	switch m {
	case ratecard.CPU:
		return "CPU"
	case ratecard.Memory:
		return "Memory"
	case ratecard.Storage:
		return "Storage"
	case ratecard.NetTx:
		return "Network out"
	case ratecard.NetRx:
		return "Network in"
	case ratecard.ContainerSeconds:
		return "Container run time"
	case billing.CorrectionMeter:
		return "Correction"
	}
	return string(m)
}

// totals draws the VAT breakdown (left) beside the document's totals (right).
func (r *renderer) totals() {
	f, inv := r.f, r.inv
	type trow struct{ label, amount string }
	rows := []trow{{"Lines", inv.Totals.Lines.StringFixed(2)}}
	for _, a := range inv.Allowances {
		label := "SLA credit " + a.Period + " reversed" // a credit note's, its base negated
		if a.Base.IsPositive() {
			label = fmt.Sprintf("SLA credit %s (%s %% of %s)", a.Period, a.Percent, group(a.Base.StringFixed(2)))
		}
		rows = append(rows, trow{label, a.Amount.StringFixed(2)})
	}
	rows = append(rows, trow{"Taxable amount", inv.Totals.TaxExclusive.StringFixed(2)}, trow{"VAT", inv.Totals.VAT.StringFixed(2)})
	exempt := r.exemptions()
	r.style("", 8, muted)
	vatH := float64(len(inv.VAT)+1)*rowH + 2 + r.paragraphHeight(94, 4, exempt)
	h := max(float64(len(rows)+1)*rowH+4, vatH)
	r.ensure(7.5 + h)
	top := f.GetY()

	// VAT breakdown, left.
	r.style("B", 10.5, accent)
	r.put(marginX, top, 94, 6, "VAT and totals", "L")
	y := top + 7.5
	cols := []column{{"Category", 38, "L"}, {"Rate", 16, "R"}, {"Taxable", 20, "R"}, {"VAT", 20, "R"}}
	f.SetFillColor(tint.r, tint.g, tint.b)
	f.Rect(marginX, y, 94, rowH, "F")
	r.style("B", 8, ink)
	x := marginX
	for _, c := range cols {
		r.put(x, y, c.w, rowH, c.title, c.align)
		x += c.w
	}
	y += rowH
	r.style("", 8.5, ink)
	for _, v := range inv.VAT {
		x = marginX
		cells := []string{vatCategory(v.Category), v.Rate.String() + " %", group(v.Taxable.StringFixed(2)), group(v.Amount.StringFixed(2))}
		for i, c := range cols {
			r.put(x, y, c.w, rowH, cells[i], c.align)
			x += c.w
		}
		y += rowH
		f.SetDrawColor(rule.r, rule.g, rule.b)
		f.SetLineWidth(0.1)
		f.Line(marginX, y, marginX+94, y)
	}
	if exempt != "" {
		r.style("", 8, muted)
		f.SetXY(marginX, y+1.5)
		r.paragraph(94, 4, exempt)
	}

	// Totals, right.
	tx, tw := right-72.0, 72.0
	y = top + 7.5
	for _, t := range rows {
		r.style("", 8.5, ink)
		r.put(tx, y, tw-26, rowH, t.label, "L")
		r.put(tx+tw-26, y, 26, rowH, group(t.amount), "R")
		y += rowH
	}
	y += 1
	f.SetFillColor(accent.r, accent.g, accent.b)
	f.Rect(tx, y, tw, rowH+2.4, "F")
	label := "Total payable"
	if inv.Kind == billing.KindCreditNote {
		label = "Total credited"
	}
	r.style("B", 10, rgb{255, 255, 255})
	r.put(tx+2, y+1.2, tw-30, rowH, label, "L")
	r.put(tx+tw-30, y+1.2, 28, rowH, currencySign(inv.Currency)+" "+group(inv.Totals.Payable.StringFixed(2)), "R")
	f.SetY(top + 7.5 + h + 5)
}

// exemptions explains the exempt VAT categories, as an exempt invoice must.
func (r *renderer) exemptions() string {
	var out []string
	for _, v := range r.inv.VAT {
		if v.Category != billing.VATExempt {
			continue
		}
		s := "VAT exemption: " + cmp.Or(v.ExemptionReason, "exempt")
		if v.ExemptionCode != "" {
			s += " (" + v.ExemptionCode + ")"
		}
		out = append(out, s+".")
	}
	return strings.Join(out, " ")
}

func vatCategory(c string) string {
	switch c {
	case billing.VATStandard:
		return "S · standard rate"
	case billing.VATExempt:
		return "E · exempt"
	}
	return c
}

// currencySign is € for the euro and the ISO 4217 code for any other currency.
func currencySign(code string) string {
	if code == "EUR" {
		return "€"
	}
	return code
}

// sla draws the availability figures of each billed month and the credit
// they earned, or says why there are none.
func (r *renderer) sla() {
	inv := r.inv
	const title = "Service level: availability of the production apps"
	if len(inv.Inputs.Months) == 0 && len(inv.Allowances) == 0 {
		text := "No SLA figures on this document."
		if inv.Kind == billing.KindCreditNote {
			text = fmt.Sprintf("No SLA figures on this credit note: it leaves the SLA credit of invoice %s as it is.", cmp.Or(inv.Refers, "—"))
		}
		r.section(title, 5)
		r.style("", 8.5, ink)
		r.paragraph(contentW, 4.5, text)
		r.f.SetY(r.f.GetY() + 5)
		return
	}
	notes := r.slaNotes()
	r.style("", 8, muted)
	notesH := r.paragraphHeight(contentW, 4, notes)
	rows := max(len(inv.Inputs.Months), len(inv.Allowances))
	r.section(title, float64(rows+1)*rowH+notesH+3)
	r.beginTable([]column{
		{"Month", 30, "L"}, {"Availability", 24, "R"}, {"Eligible minutes", 28, "R"},
		{"Platform down min.", 32, "R"}, {"Credit tier", 36, "R"}, {"Credit", 24, "R"},
	})
	for _, m := range inv.Inputs.Months {
		credit := r.allowance(m.Period)
		if m.SLA == nil {
			r.row(false, monthName(m.Period), "—", "—", "—", "no production app", credit)
			continue
		}
		eligible, down := "—", "—"
		if m.SLA.EligibleMinutes > 0 { // zero: the source does not count minutes
			eligible, down = group(fmt.Sprint(m.SLA.EligibleMinutes)), group(fmt.Sprint(m.SLA.DownMinutes))
		}
		r.row(false, monthName(m.Period), m.SLA.Availability.String()+" %", eligible, down, tierText(inv.Inputs.CreditTiers, m), credit)
	}
	if len(inv.Inputs.Months) == 0 { // a full credit note reverses the credited invoice's SLA credit
		for _, a := range inv.Allowances {
			r.row(false, monthName(a.Period), a.Availability.String()+" %", "—", "—", a.Percent.String()+" % reversed", group(a.Amount.StringFixed(2)))
		}
	}
	r.endTable()
	if notes != "" {
		r.style("", 8, muted)
		r.f.SetXY(marginX, r.f.GetY()+1.5)
		r.paragraph(contentW, 4, notes)
	}
	r.f.SetY(r.f.GetY() + 5)
}

// allowance is the SLA credit period earned, as the totals carry it.
func (r *renderer) allowance(period string) string {
	for _, a := range r.inv.Allowances {
		if a.Period == period {
			return group(a.Amount.StringFixed(2))
		}
	}
	return "0.00"
}

// tierText names the credit tier a month's availability fell in.
func tierText(tiers []credit.Tier, m billing.MonthInput) string {
	if !m.CreditPercent.IsPositive() {
		return "none"
	}
	for _, t := range tiers {
		if t.Credit.Equal(m.CreditPercent) && m.SLA.Availability.LessThan(t.Below) {
			return fmt.Sprintf("below %s %%: %s %%", t.Below, t.Credit)
		}
	}
	return m.CreditPercent.String() + " %"
}

// slaNotes explain the SLA table: the maintenance windows, the tiers and
// where the figures come from.
func (r *renderer) slaNotes() string {
	inv := r.inv
	if len(inv.Inputs.Months) == 0 {
		return ""
	}
	notes := []string{"Maintenance windows: none declared."}
	if len(inv.Inputs.CreditTiers) > 0 {
		var tiers []string
		for _, t := range inv.Inputs.CreditTiers {
			tiers = append(tiers, fmt.Sprintf("below %s %%: %s %%", t.Below, t.Credit))
		}
		notes = append(notes, "Credit tiers: "+strings.Join(tiers, ", ")+" of the month's production lines.")
	}
	var sources []string
	for _, m := range inv.Inputs.Months {
		if m.SLA != nil && m.SLA.Source != "" && !slices.Contains(sources, m.SLA.Source) {
			sources = append(sources, m.SLA.Source)
		}
	}
	if len(sources) > 0 {
		notes = append(notes, "Availability = (eligible minutes - platform-caused down minutes) / eligible minutes; "+
			"\"—\" where the source does not report minutes. Source: "+strings.Join(sources, ", ")+".")
	}
	return strings.Join(notes, " ")
}

// payment says how to pay the invoice, or what the credit note does.
func (r *renderer) payment() {
	inv := r.inv
	s := inv.Seller
	amount := currencySign(inv.Currency) + " " + group(inv.Totals.Payable.Abs().StringFixed(2))
	var text string
	switch {
	case inv.Number == "":
		text = "This is a draft: it is not a request for payment. The issued invoice will carry a number and a due date."
	case inv.Kind == billing.KindCreditNote:
		text = fmt.Sprintf("This credit note credits %s against invoice %s; no payment is due. Please mention %s when you book it.",
			amount, cmp.Or(inv.Refers, "—"), inv.Number)
	case !inv.Totals.Payable.IsPositive():
		text = fmt.Sprintf("Nothing to pay. Please mention %s in any correspondence.", inv.Number)
	default:
		text = fmt.Sprintf("Please transfer %s by %s to IBAN %s", amount, longDate(inv.DueDate), iban(s.IBAN))
		if s.BIC != "" {
			text += " (BIC " + s.BIC + ")"
		}
		text += fmt.Sprintf(", account holder %s, and please mention %s.", cmp.Or(s.Party.LegalName, s.Name), inv.Number)
	}
	if s.Party.Email != "" {
		text += " Questions: " + s.Party.Email + "."
	}
	r.style("", 9, ink)
	h := r.paragraphHeight(contentW-8, 4.6, text) + 5
	r.section("Payment", h)
	r.style("", 9, ink)
	y := r.f.GetY()
	r.f.SetFillColor(tint.r, tint.g, tint.b)
	r.f.Rect(marginX, y, contentW, h, "F")
	r.f.SetXY(marginX+4, y+2.5)
	r.paragraph(contentW-8, 4.6, text)
	r.f.SetY(y + h + 5)
}

// iban groups an IBAN by four characters, as it is printed on paper.
func iban(s string) string {
	var b strings.Builder
	for i, c := range strings.ReplaceAll(s, " ", "") {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return cmp.Or(b.String(), "—")
}

// annex draws, on its own page, the quantities per project and environment.
// A partial credit note has none.
func (r *renderer) annex() {
	inv := r.inv
	if len(inv.Annex) == 0 {
		return
	}
	r.f.AddPage()
	r.style("B", 14, accent)
	r.put(marginX, r.f.GetY(), contentW, 7, "Annex: usage per project and environment", "L")
	r.style("", 8.5, muted)
	r.f.SetXY(marginX, r.f.GetY()+7.5)
	r.paragraph(contentW, 4.5, fmt.Sprintf("%s · %s · %s · quantities in billing units", documentName(inv), customerName(inv), monthName(inv.Period)))
	r.f.SetY(r.f.GetY() + 5)
	r.beginTable([]column{{"Environment", 44, "L"}, {"Meter", 58, "L"}, {"Quantity", 42, "R"}, {"Unit", 30, "L"}})
	for i, a := range inv.Annex {
		if i == 0 || a.Project != inv.Annex[i-1].Project || a.Adjusts != inv.Annex[i-1].Adjusts {
			heading := "Project " + a.Project
			if a.Adjusts != "" {
				heading += " · adjustment: records of " + monthName(a.Adjusts)
			}
			r.beginGroup(heading)
		}
		meter := meterName(a.Meter)
		if a.Adjusts != "" {
			meter += " · adjusts " + a.Adjusts
		}
		r.row(false, string(a.Environment), meter, group(a.Quantity.StringFixed(6)), string(a.Unit))
		// What was billed beyond what was measured, one row each, so that
		// the measured quantity matches the usage API.
		for _, part := range []struct {
			name string
			q    *billing.Quantity
		}{{"of which measured", a.Measured}, {"min-run top-up", a.MinRunTopUp}, {"reserved uplift", a.ReservedUplift}} {
			if part.q != nil {
				r.row(false, "", "   "+part.name, group(part.q.StringFixed(6)), string(a.Unit))
			}
		}
	}
	r.endTable()
}

// group separates the thousands of a decimal's integer part with spaces, as
// ISO 80000 writes numbers: unambiguous to a reader used to a decimal comma
// as much as to one used to a decimal point.
func group(s string) string {
	sign, digits := "", s
	if strings.HasPrefix(s, "-") {
		sign, digits = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(digits, ".")
	var b strings.Builder
	b.WriteString(sign)
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		b.WriteString("." + frac)
	}
	return b.String()
}

// longDate writes "2026-12-04" as "4 December 2026", and "—" for no date.
func longDate(s string) string {
	if s == "" {
		return "—"
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return s
	}
	return t.Format("2 January 2006")
}

// monthName writes "2026-11" as "November 2026".
func monthName(p string) string {
	t, err := time.Parse("2006-01", p)
	if err != nil {
		return p
	}
	return t.Format("January 2006")
}

// periodText is the billed period's first and last day: "1–30 November 2026".
func periodText(inv *billing.Invoice) string {
	start, err1 := time.Parse(time.DateOnly, inv.PeriodStart)
	end, err2 := time.Parse(time.DateOnly, inv.PeriodEnd)
	switch {
	case err1 != nil || err2 != nil:
		return monthName(inv.Period)
	case start.Year() == end.Year() && start.Month() == end.Month():
		return fmt.Sprintf("%d–%s", start.Day(), end.Format("2 January 2006"))
	}
	return start.Format("2 January 2006") + " – " + end.Format("2 January 2006")
}
