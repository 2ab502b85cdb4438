package collector_test

// Issue 19, findings 1 and 5: an institution cannot starve agents or the
// other institutions through the Loki push.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
)

// slowPush is a Loki push whose body the test sends when it chooses.
type slowPush struct {
	conn net.Conn
	r    *bufio.Reader
	rest []byte
}

// startSlowPush opens a connection, sends a push's headers and the first
// bytes of its body, and returns once the server reads the body (it answers
// Expect: 100-continue then), that is once a handler holds the push.
func startSlowPush(t *testing.T, e *env, path, token string, body []byte, header ...string) *slowPush {
	t.Helper()
	u, err := url.Parse(e.api.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var h strings.Builder
	fmt.Fprintf(&h, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n", path, u.Host, token, len(body))
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&h, "%s: %s\r\n", header[i], header[i+1])
	}
	h.WriteString("\r\n")
	if _, err := io.WriteString(conn, h.String()); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	status, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		t.Fatalf("waiting for 100 Continue: %q, %v", status, err)
	}
	if _, err := r.ReadString('\n'); err != nil { // the blank line after it
		t.Fatal(err)
	}
	if _, err := conn.Write(body[:5]); err != nil {
		t.Fatal(err)
	}
	return &slowPush{conn: conn, r: r, rest: body[5:]}
}

// answer reads the server's answer, after sending the rest of the body if send.
func (p *slowPush) answer(t *testing.T, send bool) answer {
	t.Helper()
	if send {
		if _, err := p.conn.Write(p.rest); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(p.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return readAnswer(t, resp)
}

func jsonPush(at time.Time, labels, line string) []byte {
	return []byte(fmt.Sprintf(`{"streams":[{"stream":%s,"values":[["%d",%q]]}]}`, labels, at.UnixNano(), line))
}

func TestSlowPushesOfOneInstitutionLeaveAgentsTheirSlots(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.QueueTimeout = 0 // a batch that finds every slot taken is refused at once
	e := newEnv(t, &cfg, nil)
	body := jsonPush(now.Add(-time.Minute), `{"app":"slow"}`, "slow")
	// As many slow pushes as agents have slots: before issue 19 each took a
	// slot before reading its body, and agents got 429 while they trickled in.
	var slow []*slowPush
	for range cfg.MaxInflightBatches {
		slow = append(slow, startSlowPush(t, e, "/loki/api/v1/push", caamiToken, body, "X-Scope-OrgID", "caami", "Content-Type", "application/json"))
	}
	if a := e.post(t, agentNode1, records("caami", 0, 10)); a.code != http.StatusOK {
		t.Fatalf("an agent's batch while %d pushes send their bodies: %d %s", len(slow), a.code, a.body)
	}
	if a := e.postLogs(t, agentNode1, []logs.Line{logLine("ona", "web", "c1", "prod", now.Add(-time.Minute), "agent's line")}); a.code != http.StatusOK {
		t.Fatalf("an agent's log batch while %d pushes send their bodies: %d %s", len(slow), a.code, a.body)
	}
	// The slow pushes were held open all along; each is stored once it arrives.
	for i, p := range slow {
		if a := p.answer(t, true); a.code != http.StatusNoContent {
			t.Errorf("slow push %d, once sent: %d %s", i, a.code, a.body)
		}
	}
}

func TestABodyPastBodyReadTimeoutGets408AndHoldsNoSlot(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.BodyReadTimeout = 50 * time.Millisecond
	cfg.MaxInflightBatches, cfg.QueueTimeout = 1, 0
	e := newEnv(t, &cfg, nil)
	push := startSlowPush(t, e, "/loki/api/v1/push", caamiToken, jsonPush(now, `{"app":"slow"}`, "slow"),
		"X-Scope-OrgID", "caami", "Content-Type", "application/json")
	if a := push.answer(t, false); a.code != http.StatusRequestTimeout || !strings.Contains(string(a.body), "collector.body_read_timeout") {
		t.Errorf("a push whose body stops: %d %s, want 408 naming collector.body_read_timeout", a.code, a.body)
	}
	batch := startSlowPush(t, e, "/api/v1/usage", agentNode1, encode(t, records("caami", 0, 3)))
	if a := batch.answer(t, false); a.code != http.StatusRequestTimeout {
		t.Errorf("an agent's batch whose body stops: %d %s, want 408", a.code, a.body)
	}
	if a := e.post(t, agentNode1, records("caami", 0, 3)); a.code != http.StatusOK {
		t.Errorf("a batch after the timed-out ones, with one slot: %d %s", a.code, a.body)
	}
	if n := e.metric(t, "paasmeter_collector_loki_push_refusals_total", map[string]string{"tenant": "caami", "reason": "body_timeout"}); n != 1 {
		t.Errorf("push refusals{reason=body_timeout} = %v, want 1", n)
	}
	if n := e.metric(t, "paasmeter_collector_throttled_requests_total", map[string]string{"kind": "usage", "reason": "body_timeout"}); n != 1 {
		t.Errorf("throttled{kind=usage,reason=body_timeout} = %v, want 1", n)
	}
}

// gatedLogs holds caami's log appends until release is closed.
type gatedLogs struct {
	metering.Store
	entered chan struct{}
	release chan struct{}
}

func (g gatedLogs) AppendLogs(ctx context.Context, lines []logs.Line) (metering.AppendResult, error) {
	if len(lines) > 0 && lines[0].Tenant == "caami" {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Store.AppendLogs(ctx, lines)
}

func TestInstitutionsPushesTakeTheirOwnSlotsNeverTheAgents(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.MaxInflightBatches, cfg.QueueTimeout = 1, 0
	cfg.Logs.MaxInflightPushes, cfg.Logs.MaxInflightPushesPerTenant = 2, 1
	gate := gatedLogs{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newEnv(t, &cfg, func(s metering.Store) metering.Store { gate.Store = s; return gate })
	released := false
	t.Cleanup(func() {
		if !released {
			close(gate.release)
		}
	})

	req := newRequest(t, "POST", e.api.URL+"/loki/api/v1/push", caamiToken, bytes.NewReader(jsonPush(now, `{"app":"a"}`, "held")))
	req.Header.Set("X-Scope-OrgID", "caami")
	req.Header.Set("Content-Type", "application/json")
	held := sendAsync(req)
	<-gate.entered // caami's push holds its slot in the store

	a := e.pushJSON(t, caamiToken, "caami", string(jsonPush(now, `{"app":"a"}`, "second")), false)
	if a.code != http.StatusTooManyRequests || !strings.Contains(string(a.body), "max_inflight_pushes_per_tenant") {
		t.Errorf("caami's second push: %d %s, want 429 naming max_inflight_pushes_per_tenant", a.code, a.body)
	}
	if a := e.pushJSON(t, onaToken, "ona", string(jsonPush(now, `{"app":"a"}`, "ona's")), false); a.code != http.StatusNoContent {
		t.Errorf("ona's push while caami's is held: %d %s", a.code, a.body)
	}
	if a := e.post(t, agentNode1, records("caami", 0, 5)); a.code != http.StatusOK {
		t.Errorf("an agent's batch (one agent slot) while caami's push is held: %d %s", a.code, a.body)
	}
	close(gate.release)
	released = true
	if a := <-held; a.err != nil || a.code != http.StatusNoContent {
		t.Errorf("the held push: %d %v", a.code, a.err)
	}
	if n := e.metric(t, "paasmeter_collector_loki_push_refusals_total", map[string]string{"tenant": "caami", "reason": "inflight"}); n != 1 {
		t.Errorf("push refusals{reason=inflight} = %v, want 1", n)
	}
}

func TestPushesBeyondMaxStreamsPerTenantAreRefusedUntilRetentionFreesStreams(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.MaxStreamsPerTenant = 3
	e := newEnv(t, &cfg, nil)
	at := now.Add(-time.Minute)
	// One of caami's streams has only lines past its retention (30 days).
	if _, err := e.store.AppendLogs(context.Background(), []logs.Line{withReceived(logLine("caami", "crashed", "c0", "prod", now.AddDate(0, 0, -40), "old"))}); err != nil {
		t.Fatal(err)
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, "a"), stream(`{app="b"}`, at, "b")); a.code != http.StatusNoContent {
		t.Fatalf("a push up to the limit: %d %s", a.code, a.body)
	}
	a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, "a2"), stream(`{app="c"}`, at, "c"))
	if a.code != http.StatusTooManyRequests || !strings.Contains(string(a.body), "max_streams_per_tenant (3)") {
		t.Errorf("a push adding a fourth stream: %d %s, want 429 naming max_streams_per_tenant", a.code, a.body)
	}
	e.clock.Advance(time.Second) // its Retry-After: caami's pushes are held until then
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, "a3")); a.code != http.StatusNoContent {
		t.Errorf("a push to an existing stream at the limit: %d %s", a.code, a.body)
	}
	if a := e.pushProto(t, onaToken, "ona", stream(`{app="a"}`, at, "a"), stream(`{app="b"}`, at, "b"), stream(`{app="c"}`, at, "c")); a.code != http.StatusNoContent {
		t.Errorf("ona's streams while caami is at its limit: %d %s", a.code, a.body)
	}
	if got := lineTexts(e.storedLines(t, "caami"), func(l logs.Line) string { return l.Line }); !slices.Equal(sorted(got), []string{"a", "a3", "b", "old"}) {
		t.Errorf("caami's lines: %q; the refused push stored nothing", got)
	}

	if _, err := e.srv.EnforceRetention(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stored, _, err := e.store.CountLogStreams(context.Background(), "caami", nil); err != nil || stored != 2 {
		t.Errorf("caami has %d streams after retention (%v), want 2: the emptied one is gone", stored, err)
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="c"}`, at, "c")); a.code != http.StatusNoContent {
		t.Errorf("the fourth stream once retention emptied one: %d %s", a.code, a.body)
	}
	if n := e.metric(t, "paasmeter_collector_loki_push_refusals_total", map[string]string{"tenant": "caami", "reason": "streams"}); n != 1 {
		t.Errorf("push refusals{reason=streams} = %v, want 1", n)
	}
}

func sorted(xs []string) []string {
	slices.Sort(xs)
	return xs
}

func withReceived(l logs.Line) logs.Line {
	l.ReceivedAt = l.Time
	return l
}

func TestAnInstitutionWith40000StreamsStillQueriesItsLogs(t *testing.T) {
	e := newEnv(t, nil, nil)
	const n = 40_000
	lines := make([]logs.Line, n)
	for i := range lines {
		lines[i] = withReceived(logLine("caami", fmt.Sprintf("app-%05d", i), "c1", "prod", now.Add(-time.Hour+time.Duration(i)*time.Millisecond), fmt.Sprintf("line %d", i)))
	}
	if _, err := e.store.AppendLogs(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	a := e.lokiGet(t, caamiToken, "caami", "/loki/api/v1/query_range", url.Values{"query": {`{app=~"app-.*"}`}, "limit": {"5"}, "since": {"2h"}})
	var q lokiQuery
	if a.decode(t, &q); a.code != http.StatusOK || len(q.Data.Result) != 5 {
		t.Errorf("query_range over %d streams: %d %s", n, a.code, a.body)
	}
}

// onePushOf returns a snappy protobuf push of n one-byte lines in one stream.
func onePushOf(t *testing.T, n int) []byte {
	t.Helper()
	st := push.Stream{Labels: `{app="tiny"}`, Entries: make([]push.Entry, n)}
	for i := range st.Entries {
		st.Entries[i] = push.Entry{Timestamp: now.Add(-time.Minute), Line: "x"}
	}
	raw, err := (&push.PushRequest{Streams: []push.Stream{st}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func TestOneByteLinesCostTheirLineCount(t *testing.T) {
	post := func(e *env, body []byte) answer {
		return do(t, "POST", e.api.URL+"/loki/api/v1/push", caamiToken, bytes.NewReader(body), "Content-Type", "application/x-protobuf", "X-Scope-OrgID", "caami")
	}
	flood := onePushOf(t, 550_000) // 550 KB of line bytes, well within the byte burst
	e := newEnv(t, nil, nil)
	if a := post(e, flood); a.code != http.StatusRequestEntityTooLarge || !strings.Contains(string(a.body), "collector.logs.max_lines_per_push") {
		t.Errorf("550,000 one-byte lines: %d %s, want 413 naming max_lines_per_push", a.code, a.body)
	}
	cfg := collector.DefaultConfig()
	cfg.Logs.MaxLinesPerPush = 1_000_000
	e = newEnv(t, &cfg, nil)
	if a := post(e, flood); a.code != http.StatusRequestEntityTooLarge || !strings.Contains(string(a.body), "collector.logs.ingestion_burst_lines") {
		t.Errorf("550,000 one-byte lines within max_lines_per_push: %d %s, want 413 naming ingestion_burst_lines", a.code, a.body)
	}
	if n := e.metric(t, "paasmeter_collector_loki_push_refusals_total", map[string]string{"tenant": "caami", "reason": "lines"}); n != 1 {
		t.Errorf("push refusals{reason=lines} = %v, want 1", n)
	}

	cfg = collector.DefaultConfig()
	cfg.Logs.IngestionRateLines, cfg.Logs.IngestionBurstLines = 10, 100
	e = newEnv(t, &cfg, nil)
	sixty := onePushOf(t, 60)
	if a := post(e, sixty); a.code != http.StatusNoContent {
		t.Fatalf("60 lines within the burst of 100: %d %s", a.code, a.body)
	}
	if a := post(e, sixty); a.code != http.StatusTooManyRequests || !strings.Contains(string(a.body), "collector.logs.ingestion_rate_lines") || a.header.Get("Retry-After") != "2" {
		t.Errorf("60 more lines (60 bytes): %d Retry-After %q %s, want 429 after 2 s naming ingestion_rate_lines", a.code, a.header.Get("Retry-After"), a.body)
	}
	e.clock.Advance(2 * time.Second)
	if a := post(e, sixty); a.code != http.StatusNoContent {
		t.Errorf("the same push 2 s later: %d %s", a.code, a.body)
	}
}

func TestPerStreamRateLimitsOneStreamNotTheOthers(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.MaxLineBytes, cfg.Logs.PerStreamRateBytes, cfg.Logs.PerStreamBurstBytes = 1000, 1000, 1000
	e := newEnv(t, &cfg, nil)
	at := now.Add(-time.Minute)
	big := strings.Repeat("x", 800)
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, big)); a.code != http.StatusNoContent {
		t.Fatalf("a first push: %d %s", a.code, a.body)
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, big+"y")); a.code != http.StatusTooManyRequests || !strings.Contains(string(a.body), "per_stream_rate_bytes") {
		t.Errorf("the same stream again: %d %s, want 429 naming per_stream_rate_bytes", a.code, a.body)
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="b"}`, at, big)); a.code != http.StatusNoContent {
		t.Errorf("another stream of the same tenant: %d %s", a.code, a.body)
	}
}

func TestPushRateLimitsRequests(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.PushRateRequests, cfg.Logs.PushBurstRequests = 1, 2
	e := newEnv(t, &cfg, nil)
	at := now.Add(-time.Minute)
	for i := range 2 {
		if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, fmt.Sprint(i))); a.code != http.StatusNoContent {
			t.Fatalf("push %d within the burst: %d %s", i, a.code, a.body)
		}
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, "3")); a.code != http.StatusTooManyRequests || !strings.Contains(string(a.body), "push_rate_requests") {
		t.Errorf("a third push: %d %s, want 429 naming push_rate_requests", a.code, a.body)
	}
	if a := e.pushProto(t, onaToken, "ona", stream(`{app="a"}`, at, "ona")); a.code != http.StatusNoContent {
		t.Errorf("ona's push: %d %s", a.code, a.body)
	}
}

func TestConfigNamesEachFairnessKeyItRefuses(t *testing.T) {
	for want, breakIt := range map[string]func(c *collector.Config){
		"body_read_timeout: must be positive":                                            func(c *collector.Config) { c.BodyReadTimeout = 0 },
		"logs.max_streams_per_tenant: 0 is below the minimum of 1":                       func(c *collector.Config) { c.Logs.MaxStreamsPerTenant = 0 },
		"logs.ingestion_burst_lines: 0 is below the minimum of 1":                        func(c *collector.Config) { c.Logs.IngestionBurstLines = 0 },
		"logs.push_rate_requests: -1 is below the minimum of 1":                          func(c *collector.Config) { c.Logs.PushRateRequests = -1 },
		"logs.max_lines_per_push: 0 is below the minimum of 1":                           func(c *collector.Config) { c.Logs.MaxLinesPerPush = 0 },
		"logs.per_stream_burst_bytes: 100 is below the minimum of 262144":                func(c *collector.Config) { c.Logs.PerStreamBurstBytes = 100 },
		"logs.max_inflight_pushes_per_tenant: 3 must not exceed max_inflight_pushes (2)": func(c *collector.Config) { c.Logs.MaxInflightPushesPerTenant = 3 },
	} {
		c := collector.DefaultConfig()
		breakIt(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
}

func TestAnInstitutionPastALimitIsHeldUntilRetryAfterAndAgentsAreNot(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.MaxStreamsPerTenant = 2
	e := newEnv(t, &cfg, nil)
	at := now.Add(-time.Minute)
	nodeStream := `{app="a",node="node-1"}`
	if a := e.pushProto(t, caamiToken, "caami", stream(nodeStream, at, "a"), stream(`{app="b"}`, at, "b")); a.code != http.StatusNoContent {
		t.Fatalf("a push up to the limit: %d %s", a.code, a.body)
	}
	a := e.pushProto(t, caamiToken, "caami", stream(`{app="c"}`, at, "c"))
	if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") != "1" {
		t.Fatalf("a push past max_streams_per_tenant: %d Retry-After %q %s, want 429 after 1 s", a.code, a.header.Get("Retry-After"), a.body)
	}
	// Before the second is up, even a push the limits would take is refused
	// unread, naming the limit that set the hold; nothing of it is stored.
	held := e.pushProto(t, caamiToken, "caami", stream(nodeStream, at, "a, too early"))
	if held.code != http.StatusTooManyRequests || held.header.Get("Retry-After") != "1" ||
		!strings.Contains(string(held.body), "collector.logs.max_streams_per_tenant") || !strings.Contains(string(held.body), "refused unread") {
		t.Errorf("a push to an existing stream before Retry-After: %d Retry-After %q %s, want 429 naming max_streams_per_tenant", held.code, held.header.Get("Retry-After"), held.body)
	}
	// Nobody else is held: ona, and the agents, for caami's containers too.
	if a := e.pushProto(t, onaToken, "ona", stream(`{app="a"}`, at, "ona's")); a.code != http.StatusNoContent {
		t.Errorf("ona's push while caami is held: %d %s", a.code, a.body)
	}
	if a := e.pushProto(t, agentNode1, "caami", stream(`{app="c",node="node-1"}`, at, "agent's")); a.code != http.StatusTooManyRequests || !strings.Contains(string(a.body), "max_streams_per_tenant (2)") {
		t.Errorf("an agent's push of a new caami stream: %d %s, want the streams limit itself, not the hold", a.code, a.body)
	}
	if a := e.pushProto(t, agentNode1, "caami", stream(nodeStream, at, "a, from an agent")); a.code != http.StatusNoContent {
		t.Errorf("an agent's push to an existing caami stream while caami is held: %d %s", a.code, a.body)
	}
	if a := e.post(t, agentNode1, records("caami", 0, 5)); a.code != http.StatusOK {
		t.Errorf("an agent's usage batch while caami is held: %d %s", a.code, a.body)
	}
	if got := lineTexts(e.storedLines(t, "caami"), func(l logs.Line) string { return l.Line }); !slices.Equal(sorted(got), []string{"a", "a, from an agent", "b"}) {
		t.Errorf("caami's lines: %q; the held push stored nothing", got)
	}
	if n := e.metric(t, "paasmeter_collector_loki_push_refusals_total", map[string]string{"tenant": "caami", "reason": "held"}); n != 1 {
		t.Errorf("push refusals{tenant=caami,reason=held} = %v, want 1", n)
	}

	e.clock.Advance(time.Second)
	if a := e.pushProto(t, caamiToken, "caami", stream(nodeStream, at, "a, on time")); a.code != http.StatusNoContent {
		t.Errorf("the push once Retry-After has passed: %d %s", a.code, a.body)
	}
}

func TestARefusalOfOneStreamHoldsNoOtherPush(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.MaxLineBytes, cfg.Logs.PerStreamRateBytes, cfg.Logs.PerStreamBurstBytes = 1000, 1000, 1000
	cfg.Logs.MaxInflightPushesPerTenant = 1
	e := newEnv(t, &cfg, nil)
	at := now.Add(-time.Minute)
	big := strings.Repeat("x", 800)
	for i, want := range []int{http.StatusNoContent, http.StatusTooManyRequests} {
		if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, fmt.Sprint(i, big))); a.code != want {
			t.Fatalf("push %d to one stream: %d %s, want %d", i, a.code, a.body, want)
		}
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="b"}`, at, big)); a.code != http.StatusNoContent {
		t.Errorf("another stream right after one stream's refusal: %d %s", a.code, a.body)
	}
}
