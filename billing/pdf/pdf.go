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
// It is written in the institution's language (billing.Customer.Language,
// frozen with the document): English, French or Dutch (messages.go), with
// numbers, amounts and dates as that language writes them (package locale);
// English keeps the ISO 80000 grouping it always had ("36 000.5").
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
	"github.com/paasmeter/paasmeter/locale"
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
	r, err := layout(inv, first.f.PageCount())
	if err != nil {
		return err
	}
	if err := r.f.Output(w); err != nil {
		return fmt.Errorf("pdf: write %s: %w", r.documentName(), err)
	}
	return nil
}

// renderer draws one document.
type renderer struct {
	f    *fpdf.Fpdf
	tr   func(string) string
	inv  *billing.Invoice
	lang locale.Lang
	// missing are the messages the catalog lacks in lang, printed in English.
	missing map[string]bool
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
func layout(inv *billing.Invoice, pages int) (*renderer, error) {
	lang, err := locale.Parse(string(inv.Customer.Language))
	if err != nil {
		return nil, fmt.Errorf("pdf: customer.language: %w", err)
	}
	f := fpdf.New("P", "mm", "A4", "")
	r := &renderer{f: f, tr: cp1252(f.UnicodeTranslatorFromDescriptor("")), inv: inv, lang: lang, pages: pages, missing: map[string]bool{}}
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
		return nil, fmt.Errorf("pdf: lay out %s: %w", r.documentName(), err)
	}
	return r, nil
}

// t is en in the document's language.
func (r *renderer) t(en string) string {
	if r.lang == locale.English {
		return en
	}
	if s, ok := messages[en][r.lang]; ok {
		return s
	}
	r.missing[en] = true
	return en
}

// tf formats args with the format en in the document's language.
func (r *renderer) tf(en string, args ...any) string { return fmt.Sprintf(r.t(en), args...) }

// num writes a decimal's text as the document's language writes numbers.
func (r *renderer) num(s string) string {
	if r.lang == locale.English {
		return locale.Grouped(s, " ", ".")
	}
	return r.lang.Number(s)
}

// money writes an amount's text in the document's currency.
func (r *renderer) money(s string) string {
	if r.lang == locale.English {
		return currencySign(r.inv.Currency) + " " + r.num(s)
	}
	return r.lang.Money(s, r.inv.Currency)
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
	f.SetTitle(r.documentName(), true)
	f.SetSubject(r.tf("%s for %s, %s", r.documentName(), customerName(inv), r.monthName(inv.Period)), true)
	f.SetLang(string(r.lang))
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
func (r *renderer) documentName() string {
	inv := r.inv
	if inv.Number == "" {
		if inv.Kind == billing.KindCreditNote {
			return r.tf("Draft credit note %s %s", inv.Customer.Tenant, inv.Period)
		}
		return r.tf("Draft invoice %s %s", inv.Customer.Tenant, inv.Period)
	}
	return r.title() + " " + inv.Number
}

func (r *renderer) title() string {
	if r.inv.Kind == billing.KindCreditNote {
		return r.t("Credit note")
	}
	return r.t("Invoice")
}

func customerName(inv *billing.Invoice) string {
	return cmp.Or(inv.Customer.Party.LegalName, inv.Customer.Name, inv.Customer.Tenant)
}

// cp1252 wraps fpdf's Windows-1252 translator, which turns a character the
// encoding lacks into ".": in a number or an amount that reads as a decimal
// point, so such a character becomes "?" instead. (The no-break space that
// French groups digits with is in the encoding.)
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
		r.groupHeading(r.tf("%s (continued)", r.group))
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
	r.put(marginX+contentW/2, 9, contentW/2, 4, r.documentName()+" · "+r.monthName(r.inv.Period), "R")
	r.hrule(14, rule, 0.2)
	r.f.SetXY(marginX, 19)
}

// pageFooter is fpdf's footer callback.
func (r *renderer) pageFooter() {
	y := pageH - 13
	r.hrule(y, rule, 0.2)
	r.style("", 7.5, muted)
	left := r.documentName()
	if ref := r.inv.Customer.BuyerReference; ref != "" {
		left += " · " + r.tf("your reference %s", ref)
	}
	r.put(marginX, y+1.5, contentW*0.75, 4, left, "L")
	r.put(marginX+contentW*0.75, y+1.5, contentW*0.25, 4, r.tf("page %d of %d", r.f.PageNo(), r.pages), "R")
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
	for _, s := range r.partyLines(inv.Seller.Party, inv.Seller.Name, false) {
		r.put(marginX, y, 110, 4, s, "L")
		y += 4
	}
	sellerEnd := y

	// The title and the document's data, top right.
	r.style("B", 24, accent)
	r.put(right-80, top-1, 80, 10, r.title(), "R")
	y = top + 11
	if inv.Number == "" || inv.Provisional {
		r.style("B", 9, warn)
		label := r.t("DRAFT · not for payment")
		if inv.Provisional {
			label = r.t("DRAFT · provisional: records may still arrive")
		}
		r.put(right-80, y, 80, 4.5, label, "R")
		y += 6
	}
	meta := [][2]string{
		{r.t("Number"), cmp.Or(inv.Number, r.t("draft"))},
		{r.t("Issue date"), r.longDate(inv.IssueDate)},
	}
	if inv.Kind == billing.KindCreditNote {
		meta = append(meta, [2]string{r.t("Corrects invoice"), inv.Refers})
	} else {
		meta = append(meta, [2]string{r.t("Due date"), r.longDate(inv.DueDate)})
	}
	meta = append(meta, [2]string{r.t("Period"), r.periodText()}, [2]string{r.t("Your reference"), cmp.Or(inv.Customer.BuyerReference, "—")})
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
	r.put(marginX, y, 100, 4, r.t("BILLED TO"), "L")
	y += 5
	r.style("B", 10.5, ink)
	f.SetXY(marginX, y)
	nameW := metaX - marginX - 4
	r.paragraph(nameW, 5, customerName(inv))
	y = f.GetY() + 0.5
	r.style("", 8.5, ink)
	for _, s := range r.partyLines(inv.Customer.Party, customerName(inv), true) {
		r.put(marginX, y, nameW, 4, s, "L")
		y += 4
	}
	f.SetY(max(y, metaEnd) + 5)
}

// partyLines are a party's address and identifiers, without its name; the
// legal name comes first when it differs from name. withEndpoint adds the
// Peppol address, which the institution's invoice-receiving system uses.
func (r *renderer) partyLines(p institution.Party, name string, withEndpoint bool) []string {
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
	add(r.countryName(p.Address.Country))
	var ids []string
	if p.VATID != "" {
		ids = append(ids, r.tf("VAT %s", p.VATID))
	}
	if p.CompanyID != "" {
		ids = append(ids, r.tf("Enterprise no. %s", p.CompanyID))
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
func (r *renderer) countryName(code string) string {
	if code == "BE" {
		return r.t("Belgium")
	}
	return code
}

// creditNotice says, on a credit note, which invoice it corrects and why.
func (r *renderer) creditNotice() {
	inv := r.inv
	if inv.Kind != billing.KindCreditNote {
		return
	}
	text := r.tf("This credit note corrects invoice %s (%s).", cmp.Or(inv.Refers, "—"), r.monthName(inv.Period))
	if inv.Reason != "" {
		text += " " + r.tf("Reason: %s.", inv.Reason)
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
	heading := r.t("Invoice lines")
	if inv.Kind == billing.KindCreditNote {
		heading = r.t("Credit note lines")
	}
	r.section(heading, 3*rowH)
	r.style("", 8, muted)
	r.put(marginX, r.f.GetY()-1.5, contentW, 4, r.tf("Quantities in billing units; prices and amounts in %s, excluding VAT.", inv.Currency), "L")
	r.f.SetY(r.f.GetY() + 4)
	r.beginTable([]column{
		{r.t("Description"), 62, "L"}, {r.t("Tier"), 12, "C"}, {r.t("Quantity"), 31, "R"},
		{r.t("Unit"), 21, "L"}, {r.t("Unit price"), 24, "R"}, {r.t("Amount"), 24, "R"},
	})
	for i := 0; i < len(inv.Lines); {
		first := inv.Lines[i]
		j := i
		sum := decimal.Zero
		for ; j < len(inv.Lines) && inv.Lines[j].Class == first.Class && inv.Lines[j].Adjusts == first.Adjusts; j++ {
			sum = sum.Add(inv.Lines[j].Amount.Decimal)
		}
		r.beginGroup(r.groupTitle(first))
		for _, l := range inv.Lines[i:j] {
			desc := r.meterName(l.Meter)
			if l.Version != "" { // as billing.Line.VersionText, in the document's language
				desc += " · " + r.tf("rate %s from %s", l.Version, l.Effective)
			}
			if l.Adjusts != "" {
				desc += " · " + r.tf("adjusts %s", l.Adjusts)
			}
			tier := ""
			if l.Tier != nil { // a flat price has no tier
				tier = l.Tier.String()
				if r.lang != locale.English { // English has always printed the bounds as they are
					tier = r.num(l.Tier.From) + "–" + r.num(l.Tier.UpTo)
					if l.Tier.UpTo == "" {
						tier = r.num(l.Tier.From) + "+"
					}
				}
			}
			r.row(false, desc, tier, r.num(l.Quantity.StringFixed(6)), cmp.Or(string(l.Unit), "—"), r.num(l.UnitPrice.String()), r.num(l.Amount.StringFixed(2)))
		}
		if j-i > 1 {
			r.row(true, r.tf("Subtotal %s", strings.ToLower(r.className(first.Class))), "", "", "", "", r.num(sum.StringFixed(2)))
		}
		i = j
	}
	if len(inv.Lines) == 0 {
		r.row(false, r.t("No lines."), "", "", "", "", "")
	}
	r.endTable()
	r.f.SetY(r.f.GetY() + 5)
}

// groupTitle names the month and class a group of lines bills.
func (r *renderer) groupTitle(l billing.Line) string {
	// A partial credit note's correction line has the class "all". English
	// documents have always headed it so, and an issued one must render
	// the same again; the languages added since read it as a correction.
	if l.Class == "" || (l.Class == billing.CorrectionClass && r.lang != locale.English) {
		return r.tf("Correction of invoice %s", cmp.Or(r.inv.Refers, "—"))
	}
	if l.Adjusts != "" {
		return r.tf("%s · adjustment: records of %s received after its invoice", r.className(l.Class), r.monthName(l.Adjusts))
	}
	return r.className(l.Class) + " · " + r.monthName(r.inv.Period)
}

func (r *renderer) className(c ratecard.Class) string {
	switch c {
	case ratecard.Prod:
		return r.t("Production")
	case ratecard.NonProd:
		return r.t("Non-production (dev, test, acc)")
	case "":
		return r.t("Correction")
	}
	return string(c)
}

// meterName is what a reader calls the meter.
func (r *renderer) meterName(m ratecard.Meter) string {
	switch m {
	case ratecard.CPU:
		return "CPU"
	case ratecard.Memory:
		return r.t("Memory")
	case ratecard.Storage:
		return r.t("Storage")
	case ratecard.NetTx:
		return r.t("Network out")
	case ratecard.NetRx:
		return r.t("Network in")
	case ratecard.ContainerSeconds:
		return r.t("Container run time")
	case billing.CorrectionMeter:
		return r.t("Correction")
	}
	return string(m)
}

// totals draws the VAT breakdown (left) beside the document's totals (right).
func (r *renderer) totals() {
	f, inv := r.f, r.inv
	type trow struct{ label, amount string }
	rows := []trow{{r.t("Lines"), inv.Totals.Lines.StringFixed(2)}}
	for _, a := range inv.Allowances {
		label := r.tf("SLA credit %s reversed", a.Period) // a credit note's, its base negated
		if a.Base.IsPositive() {
			label = r.tf("SLA credit %s (%s %% of %s)", a.Period, r.num(a.Percent.String()), r.num(a.Base.StringFixed(2)))
		}
		rows = append(rows, trow{label, a.Amount.StringFixed(2)})
	}
	rows = append(rows, trow{r.t("Taxable amount"), inv.Totals.TaxExclusive.StringFixed(2)}, trow{r.t("VAT"), inv.Totals.VAT.StringFixed(2)})
	exempt := r.exemptions()
	r.style("", 8, muted)
	vatH := float64(len(inv.VAT)+1)*rowH + 2 + r.paragraphHeight(94, 4, exempt)
	h := max(float64(len(rows)+1)*rowH+4, vatH)
	r.ensure(7.5 + h)
	top := f.GetY()

	// VAT breakdown, left.
	r.style("B", 10.5, accent)
	r.put(marginX, top, 94, 6, r.t("VAT and totals"), "L")
	y := top + 7.5
	cols := []column{{r.t("Category"), 38, "L"}, {r.t("Rate"), 16, "R"}, {r.t("Taxable"), 20, "R"}, {r.t("VAT"), 20, "R"}}
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
		cells := []string{r.vatCategory(v.Category), r.percent(v.Rate.String()), r.num(v.Taxable.StringFixed(2)), r.num(v.Amount.StringFixed(2))}
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
		r.put(tx+tw-26, y, 26, rowH, r.num(t.amount), "R")
		y += rowH
	}
	y += 1
	f.SetFillColor(accent.r, accent.g, accent.b)
	f.Rect(tx, y, tw, rowH+2.4, "F")
	label := r.t("Total payable")
	if inv.Kind == billing.KindCreditNote {
		label = r.t("Total credited")
	}
	r.style("B", 10, rgb{255, 255, 255})
	r.put(tx+2, y+1.2, tw-30, rowH, label, "L")
	r.put(tx+tw-30, y+1.2, 28, rowH, r.money(inv.Totals.Payable.StringFixed(2)), "R")
	f.SetY(top + 7.5 + h + 5)
}

// exemptions explains the exempt VAT categories, as an exempt invoice must.
func (r *renderer) exemptions() string {
	var out []string
	for _, v := range r.inv.VAT {
		if v.Category != billing.VATExempt {
			continue
		}
		s := r.tf("VAT exemption: %s", cmp.Or(v.ExemptionReason, r.t("exempt")))
		if v.ExemptionCode != "" {
			s += " (" + v.ExemptionCode + ")"
		}
		out = append(out, s+".")
	}
	return strings.Join(out, " ")
}

func (r *renderer) vatCategory(c string) string {
	switch c {
	case billing.VATStandard:
		return r.t("S · standard rate")
	case billing.VATExempt:
		return r.t("E · exempt")
	}
	return c
}

// percent writes a percentage's number as the document's language does,
// with its sign: "99.85 %", "99,85 %" (a no-break space in French).
func (r *renderer) percent(s string) string { return r.num(s) + r.lang.PercentSign() }

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
	title := r.t("Service level: availability of the production apps")
	if len(inv.Inputs.Months) == 0 && len(inv.Allowances) == 0 {
		text := r.t("No SLA figures on this document.")
		if inv.Kind == billing.KindCreditNote {
			text = r.tf("No SLA figures on this credit note: it leaves the SLA credit of invoice %s as it is.", cmp.Or(inv.Refers, "—"))
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
		{r.t("Month"), 30, "L"}, {r.t("Availability"), 24, "R"}, {r.t("Eligible minutes"), 28, "R"},
		{r.t("Platform down min."), 32, "R"}, {r.t("Credit tier"), 36, "R"}, {r.t("Credit"), 24, "R"},
	})
	for _, m := range inv.Inputs.Months {
		credit := r.allowance(m.Period)
		if m.SLA == nil {
			r.row(false, r.monthName(m.Period), "—", "—", "—", r.t("no production app"), credit)
			continue
		}
		eligible, down := "—", "—"
		if m.SLA.EligibleMinutes > 0 { // zero: the source does not count minutes
			eligible, down = r.num(fmt.Sprint(m.SLA.EligibleMinutes)), r.num(fmt.Sprint(m.SLA.DownMinutes))
		}
		r.row(false, r.monthName(m.Period), r.percent(m.SLA.Availability.String()), eligible, down, r.tierText(inv.Inputs.CreditTiers, m), credit)
	}
	if len(inv.Inputs.Months) == 0 { // a full credit note reverses the credited invoice's SLA credit
		for _, a := range inv.Allowances {
			r.row(false, r.monthName(a.Period), r.percent(a.Availability.String()), "—", "—", r.tf("%s %% reversed", r.num(a.Percent.String())), r.num(a.Amount.StringFixed(2)))
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
			return r.num(a.Amount.StringFixed(2))
		}
	}
	return r.num("0.00")
}

// tierText names the credit tier a month's availability fell in.
func (r *renderer) tierText(tiers []credit.Tier, m billing.MonthInput) string {
	if !m.CreditPercent.IsPositive() {
		return r.t("none")
	}
	for _, t := range tiers {
		if t.Credit.Equal(m.CreditPercent) && m.SLA.Availability.LessThan(t.Below) {
			return r.tf("below %s %%: %s %%", r.num(t.Below.String()), r.num(t.Credit.String()))
		}
	}
	return r.percent(m.CreditPercent.String())
}

// slaNotes explain the SLA table: the maintenance windows, the tiers and
// where the figures come from.
func (r *renderer) slaNotes() string {
	inv := r.inv
	if len(inv.Inputs.Months) == 0 {
		return ""
	}
	notes := []string{r.t("Maintenance windows: none declared.")}
	if len(inv.Inputs.CreditTiers) > 0 {
		var tiers []string
		for _, t := range inv.Inputs.CreditTiers {
			tiers = append(tiers, r.tf("below %s %%: %s %%", r.num(t.Below.String()), r.num(t.Credit.String())))
		}
		notes = append(notes, r.tf("Credit tiers: %s of the month's production lines.", strings.Join(tiers, ", ")))
	}
	var sources []string
	for _, m := range inv.Inputs.Months {
		if m.SLA != nil && m.SLA.Source != "" && !slices.Contains(sources, m.SLA.Source) {
			sources = append(sources, m.SLA.Source)
		}
	}
	if len(sources) > 0 {
		notes = append(notes, r.tf("Availability = (eligible minutes - platform-caused down minutes) / eligible minutes; "+
			"\"—\" where the source does not report minutes. Source: %s.", strings.Join(sources, ", ")))
	}
	return strings.Join(notes, " ")
}

// payment says how to pay the invoice, or what the credit note does.
func (r *renderer) payment() {
	inv := r.inv
	s := inv.Seller
	amount := r.money(inv.Totals.Payable.Abs().StringFixed(2))
	var text string
	switch {
	case inv.Number == "":
		text = r.t("This is a draft: it is not a request for payment. The issued invoice will carry a number and a due date.")
	case inv.Kind == billing.KindCreditNote:
		text = r.tf("This credit note credits %s against invoice %s; no payment is due. Please mention %s when you book it.",
			amount, cmp.Or(inv.Refers, "—"), inv.Number)
	case !inv.Totals.Payable.IsPositive():
		text = r.tf("Nothing to pay. Please mention %s in any correspondence.", inv.Number)
	default:
		text = r.tf("Please transfer %s by %s to IBAN %s", amount, r.longDate(inv.DueDate), iban(s.IBAN))
		if s.BIC != "" {
			text += " (BIC " + s.BIC + ")"
		}
		text += r.tf(", account holder %s, and please mention %s.", cmp.Or(s.Party.LegalName, s.Name), inv.Number)
	}
	if s.Party.Email != "" {
		text += " " + r.tf("Questions: %s.", s.Party.Email)
	}
	r.style("", 9, ink)
	h := r.paragraphHeight(contentW-8, 4.6, text) + 5
	r.section(r.t("Payment"), h)
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
	r.put(marginX, r.f.GetY(), contentW, 7, r.t("Annex: usage per project and environment"), "L")
	r.style("", 8.5, muted)
	r.f.SetXY(marginX, r.f.GetY()+7.5)
	r.paragraph(contentW, 4.5, strings.Join([]string{r.documentName(), customerName(inv), r.monthName(inv.Period), r.t("quantities in billing units")}, " · "))
	r.f.SetY(r.f.GetY() + 5)
	r.beginTable([]column{{r.t("Environment"), 44, "L"}, {r.t("Meter"), 58, "L"}, {r.t("Quantity"), 42, "R"}, {r.t("Unit"), 30, "L"}})
	for i, a := range inv.Annex {
		if i == 0 || a.Project != inv.Annex[i-1].Project || a.Adjusts != inv.Annex[i-1].Adjusts {
			heading := r.tf("Project %s", a.Project)
			if a.Adjusts != "" {
				heading += " · " + r.tf("adjustment: records of %s", r.monthName(a.Adjusts))
			}
			r.beginGroup(heading)
		}
		meter := r.meterName(a.Meter)
		if a.Adjusts != "" {
			meter += " · " + r.tf("adjusts %s", a.Adjusts)
		}
		r.row(false, string(a.Environment), meter, r.num(a.Quantity.StringFixed(6)), string(a.Unit))
		// What was billed beyond what was measured, one row each, so that
		// the measured quantity matches the usage API.
		for _, part := range []struct {
			name string
			q    *billing.Quantity
		}{{r.t("of which measured"), a.Measured}, {r.t("min-run top-up"), a.MinRunTopUp}, {r.t("reserved uplift"), a.ReservedUplift}} {
			if part.q != nil {
				r.row(false, "", "   "+part.name, r.num(part.q.StringFixed(6)), string(a.Unit))
			}
		}
	}
	r.endTable()
}

// longDate writes "2026-12-04" as "4 December 2026" in the document's
// language, and "—" for no date.
func (r *renderer) longDate(s string) string {
	if s == "" {
		return "—"
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return s
	}
	return r.lang.Date(t)
}

// monthName writes "2026-11" as "November 2026" in the document's language.
func (r *renderer) monthName(p string) string {
	t, err := time.Parse("2006-01", p)
	if err != nil {
		return p
	}
	return r.lang.Month(t)
}

// periodText is the billed period's first and last day: "1–30 November 2026".
func (r *renderer) periodText() string {
	inv := r.inv
	start, err1 := time.Parse(time.DateOnly, inv.PeriodStart)
	end, err2 := time.Parse(time.DateOnly, inv.PeriodEnd)
	if err1 != nil || err2 != nil {
		return r.monthName(inv.Period)
	}
	return r.lang.DayRange(start, end)
}
