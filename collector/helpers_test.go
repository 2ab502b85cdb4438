package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/batch/batchtest"
	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla/slahttp"
	"github.com/paasmeter/paasmeter/usage"
)

// The tokens of the test collector.
const (
	agentNode1 = "agent-node-1-token"
	agentNode2 = "agent-node-2-token"
	// agentNode3 is the agent of node-3, which may run caami only.
	agentNode3 = "agent-node-3-token"
	// agentNode1CaamiOnly is another credential of node-1 listing caami only.
	agentNode1CaamiOnly = "agent-node-1-caami-only-token"
	caamiToken          = "caami-token"
	onaToken            = "ona-token"
	adminToken          = "admin-token"
)

var now = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

type env struct {
	// auditPath is the audit log of operators' reads.
	auditPath string
	srv       *collector.Server
	api       *httptest.Server
	admin     *httptest.Server
	store     metering.Store
	clock     *clock.Manual
	registry  *prometheus.Registry
}

// setup is what newEnv builds its collector from: its options, and the
// services behind the routes billing and the SLA contribute to its table.
// Those routes are served as the collector command serves them, each
// answering 501 without its service.
type setup struct {
	collector.Options
	invoices billinghttp.InvoiceReader
	drafts   billinghttp.Drafter
	windows  slahttp.MaintenanceWindows
	reports  slahttp.SLAReports
}

// newEnv starts a collector over a fresh embedded store. wrap, if given, wraps
// the store (to inject failures or delays).
func newEnv(t testing.TB, cfg *collector.Config, wrap func(metering.Store) metering.Store, opts ...func(*setup)) *env {
	t.Helper()
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var store metering.Store = st
	if wrap != nil {
		store = wrap(st)
	}
	tokens := []auth.TokenConfig{
		{Name: "agent-1", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami", "ona"}, SHA256: auth.Hash(agentNode1)},
		{Name: "agent-2", Role: auth.RoleAgent, Node: "node-2", Tenants: []string{auth.AnyTenant}, SHA256: auth.Hash(agentNode2)},
		{Name: "agent-3", Role: auth.RoleAgent, Node: "node-3", Tenants: []string{"caami"}, SHA256: auth.Hash(agentNode3)},
		{Name: "agent-1-caami", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami"}, SHA256: auth.Hash(agentNode1CaamiOnly)},
		{Name: "caami", Role: auth.RoleInstitution, Tenant: "caami", SHA256: auth.Hash(caamiToken)},
		{Name: "ona", Role: auth.RoleInstitution, Tenant: "ona", SHA256: auth.Hash(onaToken)},
		{Name: "ops", Role: auth.RoleAdmin, SHA256: auth.Hash(adminToken)},
	}
	// node-a connects with its client certificate (tls_test.go).
	authn, err := auth.NewAuthenticator(tokens, auth.CertificateConfig{Node: "node-a", Tenants: []string{"caami", "ona"}})
	if err != nil {
		t.Fatal(err)
	}
	c := collector.DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	brussels, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: st, clock: clock.NewManual(now), registry: prometheus.NewRegistry(), auditPath: filepath.Join(t.TempDir(), "access.jsonl")}
	auditLog, err := accesslog.OpenFile(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auditLog.Close() })
	o := setup{Options: collector.Options{
		Config: c, Store: store, Auth: authn, Institutions: institution.Of("caami", "ona"),
		Location: brussels, Clock: e.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: e.registry,
		AccessLog: auditLog,
	}}
	for _, opt := range opts {
		opt(&o)
	}
	var costs *billinghttp.Costs
	if o.drafts != nil {
		costs = billinghttp.NewCosts(o.drafts, o.invoices, o.Clock, o.Logger)
	}
	o.Routes = append(billinghttp.Routes(billinghttp.Options{Invoices: o.invoices, Costs: costs, Location: o.Location, Clock: o.Clock, Logger: o.Logger}),
		slahttp.Routes(slahttp.Options{Reports: o.reports, Windows: o.windows, Institutions: o.Institutions, Location: o.Location, Clock: o.Clock,
			Logger: o.Logger})...)
	e.srv, err = collector.New(o.Options)
	if err != nil {
		t.Fatal(err)
	}
	e.api = httptest.NewServer(e.srv.Handler())
	e.admin = httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(e.api.Close)
	t.Cleanup(e.admin.Close)
	return e
}

type answer struct {
	code   int
	header http.Header
	body   []byte
	err    error // transport error, for requests made off the test goroutine
}

// postAsync posts a batch from another goroutine.
func postAsync(t *testing.T, url, token string, body []byte) <-chan answer {
	t.Helper()
	return sendAsync(newRequest(t, "POST", url+"/api/v1/usage", token, bytes.NewReader(body)))
}

// sendAsync sends req from another goroutine; transport errors come back in
// the answer instead of failing the test off its goroutine.
func sendAsync(req *http.Request) <-chan answer {
	out := make(chan answer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- answer{code: resp.StatusCode, header: resp.Header, body: b, err: err}
	}()
	return out
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %s is not JSON: %v", a.code, a.body, err)
	}
}

// apiError is the error body every endpoint answers with.
type apiError struct {
	Error  string          `json:"error"`
	Detail json.RawMessage `json:"detail"`
}

type problemsDetail struct {
	Problems      []batch.Problem `json:"problems"`
	ProblemsTotal int             `json:"problems_total"`
}

func do(t *testing.T, method, url, token string, body io.Reader, header ...string) answer {
	t.Helper()
	req := newRequest(t, method, url, token, body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	a := roundTrip(t, http.DefaultClient, req)
	if a.code >= 400 && a.header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s: error answer %d has Content-Type %q, want application/json", method, url, a.code, a.header.Get("Content-Type"))
	}
	return a
}

// newRequest is a request bearing token (none when empty).
func newRequest(t *testing.T, method, url, token string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// roundTrip sends req with c and reads the whole answer.
func roundTrip(t *testing.T, c *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return readAnswer(t, resp)
}

// readAnswer reads resp's whole body and closes it.
func readAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: b}
}

// post posts a batch of records as token.
func (e *env) post(t *testing.T, token string, recs []usage.Record) answer {
	t.Helper()
	return do(t, "POST", e.api.URL+"/api/v1/usage", token, bytes.NewReader(encode(t, recs)))
}

func encode(t *testing.T, recs []usage.Record) []byte {
	t.Helper()
	return []byte(batchtest.Body(usage.EncodeBatch, recs...))
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// stored returns every record of tenant in the store.
func (e *env) stored(t *testing.T, tenant string) []usage.Record {
	t.Helper()
	var out []usage.Record
	err := e.store.ScanUsage(context.Background(), metering.UsageFilter{Tenant: tenant, From: now.AddDate(-2, 0, 0), To: now.AddDate(1, 0, 0)},
		func(r usage.Record) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return promtest.Value(t, e.registry, name, labels)
}
