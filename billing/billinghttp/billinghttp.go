// Package billinghttp serves institutions their issued invoices and credit
// notes (the list, and each document's download in every export format),
// and what their month comes to so far by the draft's arithmetic. Its
// routes are served through the collector's route table, which checks that
// the token may read the {tenant} of the path and audits operators' reads.
package billinghttp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/billing/ubl"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/state"
)

// InvoiceReader reads issued invoices and credit notes. *billing.Service is one.
type InvoiceReader interface {
	// List returns the issued documents f selects.
	List(ctx context.Context, f state.DocumentFilter) ([]*billing.Invoice, error)
	// Document returns the issued document numbered number, or an error
	// wrapping billing.ErrNotFound.
	Document(ctx context.Context, number string) (*billing.Invoice, error)
}

// InvoicesResponse is the answer of GET /api/v1/tenants/{tenant}/invoices.
type InvoicesResponse struct {
	Tenant string `json:"tenant"`
	// Invoices are the institution's invoices and credit notes, oldest first.
	Invoices []InvoiceSummary `json:"invoices"`
}

// InvoiceSummary is one issued document in the list.
type InvoiceSummary struct {
	Number    string        `json:"number"`
	Kind      string        `json:"kind"`
	Period    string        `json:"period"`
	IssueDate string        `json:"issue_date"`
	DueDate   string        `json:"due_date"`
	Currency  string        `json:"currency"`
	Payable   billing.Money `json:"payable"`
	// Refers is, on a credit note, the number of the invoice it corrects.
	Refers string `json:"refers,omitempty"`
	// Links are the paths of the document's downloads, by format.
	Links map[string]string `json:"links"`
}

// Options are what the routes serve.
type Options struct {
	// Invoices, if set, serves issued invoices and credit notes to their
	// institutions; without it the routes answer 501.
	Invoices InvoiceReader
	// Costs, if set, serves institutions the cost of their month so far;
	// without it that route answers 501.
	Costs *Costs
	// Location is the platform's time zone, for months (default UTC).
	Location *time.Location
	// Clock and Logger default to the system's.
	Clock  clock.Clock
	Logger *slog.Logger
}

// handlers serve the routes.
type handlers struct {
	invoices InvoiceReader
	costs    *Costs
	loc      *time.Location
	clock    clock.Clock
	log      *slog.Logger
}

// Routes returns the invoice routes, for the collector's table
// (collector.Options.Routes).
func Routes(o Options) []route.Route {
	h := &handlers{invoices: o.Invoices, costs: o.Costs, loc: cmp.Or(o.Location, time.UTC),
		clock: cmp.Or[clock.Clock](o.Clock, clock.System{}), log: cmp.Or(o.Logger, slog.Default())}
	invoices := func(h route.Handler) route.Handler {
		return route.Requires(o.Invoices != nil, "this collector serves no invoices: billing.rate_card is not configured", h)
	}
	return []route.Route{
		{Method: "GET", Pattern: "/api/v1/tenants/{tenant}/invoices", Access: route.TenantRead, Handle: invoices(h.getInvoices)},
		{Method: "GET", Pattern: "/api/v1/tenants/{tenant}/invoices/{file}", Access: route.TenantRead, Handle: invoices(h.getInvoice)},
		{Method: "GET", Pattern: "/api/v1/tenants/{tenant}/cost", Access: route.TenantRead,
			Handle: route.Requires(o.Costs != nil, "this collector computes no costs: billing.rate_card is not configured", h.getCost)},
	}
}

// getInvoices is GET /api/v1/tenants/{tenant}/invoices: the institution's
// issued documents, each with a link per export format.
func (h *handlers) getInvoices(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	tenant := r.PathValue("tenant")
	invs, err := h.invoices.List(r.Context(), state.DocumentFilter{Tenant: tenant})
	if err != nil {
		h.log.Error("invoice list failed", "tenant", tenant, "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "invoice store unavailable", nil)
		return
	}
	// The store lists by series, which puts every invoice before every
	// credit note; people read them by date. The sort is stable, so a day's
	// documents keep their numbers' order.
	slices.SortStableFunc(invs, func(a, b *billing.Invoice) int { return cmp.Compare(a.IssueDate, b.IssueDate) })
	resp := InvoicesResponse{Tenant: tenant, Invoices: make([]InvoiceSummary, 0, len(invs))}
	for _, inv := range invs {
		links := make(map[string]string, len(export.Formats()))
		for _, f := range export.Formats() {
			links[f] = "/api/v1/tenants/" + url.PathEscape(tenant) + "/invoices/" + url.PathEscape(export.FileName(inv, f))
		}
		resp.Invoices = append(resp.Invoices, InvoiceSummary{Number: inv.Number, Kind: inv.Kind, Period: inv.Period,
			IssueDate: inv.IssueDate, DueDate: inv.DueDate, Currency: inv.Currency, Payable: inv.Totals.Payable, Refers: inv.Refers, Links: links})
	}
	route.WriteJSON(w, http.StatusOK, resp)
}

// documentNumber is what a document number may look like: the billing
// service's PM-2026-000001, or any prefix of letters, digits and dashes.
// Anything else is refused before the store is asked.
var documentNumber = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

// getInvoice is GET /api/v1/tenants/{tenant}/invoices/{file}: the document
// file names, {number}.{format}, exported in that format as a download.
func (h *handlers) getInvoice(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	ServeDocument(r.Context(), w, h.invoices, h.log, r.PathValue("tenant"), r.PathValue("file"))
}

// ServeDocument answers a request for tenant's document file
// ({number}.{format}) from invoices, as a download; the caller has checked
// that the request may read tenant. Another institution's document is
// answered exactly as a number never issued.
func ServeDocument(ctx context.Context, w http.ResponseWriter, invoices InvoiceReader, log *slog.Logger, tenant, file string) {
	formats := map[string][]string{"formats": export.Formats()}
	number, format, ok := strings.Cut(file, ".")
	if !ok || !documentNumber.MatchString(number) {
		route.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%s is not an invoice file name: want NUMBER.FORMAT, e.g. PM-2026-000001.%s",
			route.Quote(file), export.Formats()[0]), formats)
		return
	}
	if !slices.Contains(export.Formats(), format) {
		route.WriteError(w, http.StatusBadRequest, fmt.Sprintf("unknown format %s: the formats are %s", route.Quote(format),
			strings.Join(export.Formats(), ", ")), formats)
		return
	}
	inv, err := invoices.Document(ctx, number)
	// Another institution's document is answered exactly as a number that
	// does not exist, so that numbers cannot be probed for what exists.
	if errors.Is(err, billing.ErrNotFound) || (err == nil && inv.Customer.Tenant != tenant) {
		route.WriteError(w, http.StatusNotFound, fmt.Sprintf("no invoice or credit note %s for tenant %s", number, route.Quote(tenant)), nil)
		return
	}
	if err != nil {
		log.Error("invoice read failed", "tenant", tenant, "number", number, "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "invoice store unavailable", nil)
		return
	}
	// Rendered whole before the first byte is sent: a failure is still an
	// error answer, never a truncated document with a 200.
	var body bytes.Buffer
	if err := export.Write(&body, inv, format); err != nil {
		if errors.Is(err, ubl.ErrIncomplete) {
			// The configuration lacks what a Peppol e-invoice needs: say what.
			route.WriteError(w, http.StatusUnprocessableEntity, fmt.Sprintf("%s cannot be an e-invoice: %v", number, err), nil)
			return
		}
		log.Error("invoice export failed", "tenant", tenant, "number", number, "format", format, "err", err)
		route.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("%s could not be exported as %s", number, format), nil)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", export.ContentType(format))
	// The store found the document by the number checked above, and the
	// format is a known one: nothing in the name needs escaping.
	hdr.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, export.FileName(inv, format)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body.Bytes()) // the status is sent; a failed write means the client left
}
