package collector_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/logs"
)

// pushProto sends streams (labels in Loki's text form) as a snappy protobuf push.
func (e *env) pushProto(t *testing.T, token, org string, streams ...push.Stream) answer {
	t.Helper()
	raw, err := (&push.PushRequest{Streams: streams}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return do(t, "POST", e.api.URL+"/loki/api/v1/push", token, bytes.NewReader(snappy.Encode(nil, raw)),
		"Content-Type", "application/x-protobuf", "X-Scope-OrgID", org)
}

// pushJSON sends a JSON push body, gzipped when asked.
func (e *env) pushJSON(t *testing.T, token, org, body string, gz bool) answer {
	t.Helper()
	header := []string{"Content-Type", "application/json", "X-Scope-OrgID", org}
	b := []byte(body)
	if gz {
		b = gzipped(t, b)
		header = append(header, "Content-Encoding", "gzip")
	}
	return do(t, "POST", e.api.URL+"/loki/api/v1/push", token, bytes.NewReader(b), header...)
}

func stream(labels string, at time.Time, lines ...string) push.Stream {
	s := push.Stream{Labels: labels}
	for _, l := range lines {
		s.Entries = append(s.Entries, push.Entry{Timestamp: at, Line: l})
	}
	return s
}

func ns(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func TestLokiPushesAreStoredOnceWhateverTheEncoding(t *testing.T) {
	e := newEnv(t, nil, nil)
	at := now.Add(-time.Minute)
	// Two lines share a nanosecond, and one stream comes in two parts: Seq
	// tells them apart, deterministically.
	pushed := []push.Stream{
		stream(`{app="pricing", env="prod"}`, at, "first", "second, same nanosecond"),
		stream(`{env="prod",app="pricing"}`, at.Add(time.Second), "third"),
		stream(`{app="web"}`, at, "web line"),
	}
	if a := e.pushProto(t, caamiToken, "caami", pushed...); a.code != http.StatusNoContent {
		t.Fatalf("protobuf push: %d %s, want 204", a.code, a.body)
	}
	if a := e.pushProto(t, caamiToken, "caami", pushed...); a.code != http.StatusNoContent {
		t.Fatalf("the same push again: %d %s, want 204", a.code, a.body)
	}
	// The same lines as JSON, gzipped: same ids, so nothing new.
	body := fmt.Sprintf(`{"streams":[{"stream":{"app":"pricing","env":"prod"},"values":[[%q,"first"],[%q,"second, same nanosecond"],[%q,"third"]]},`+
		`{"stream":{"app":"web"},"values":[[%q,"web line"]]}]}`, ns(at), ns(at), ns(at.Add(time.Second)), ns(at))
	if a := e.pushJSON(t, caamiToken, "caami", body, true); a.code != http.StatusNoContent {
		t.Fatalf("gzipped JSON push: %d %s, want 204", a.code, a.body)
	}
	got := e.storedLines(t, "caami")
	var seqs []string
	for _, l := range got {
		seqs = append(seqs, fmt.Sprintf("%s/%d", l.Line, l.Seq))
	}
	slices.Sort(seqs) // lines of one nanosecond come back in an order of their ids
	if want := []string{"first/0", "second, same nanosecond/1", "third/0", "web line/0"}; !slices.Equal(seqs, want) {
		t.Errorf("stored %q, want %q", seqs, want)
	}
	for outcome, want := range map[string]float64{"new": 4, "duplicate": 8} {
		if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "logs", "tenant": "caami", "outcome": outcome}); n != want {
			t.Errorf("records_total{kind=logs,outcome=%s} = %v, want %v", outcome, n, want)
		}
	}
	if n := e.metric(t, "paasmeter_collector_loki_pushes_total", map[string]string{"tenant": "caami", "outcome": "accepted"}); n != 3 {
		t.Errorf("accepted pushes = %v, want 3", n)
	}
}

func TestLokiPushTenantComesFromTheHeaderCheckedAgainstTheToken(t *testing.T) {
	e := newEnv(t, nil, nil)
	at := now.Add(-time.Minute)
	cases := []struct {
		name, token, org string
		labels           string
		code             int
		storedIn         string
	}{
		{"an institution pushing its own logs", caamiToken, "caami", `{app="a"}`, 204, "caami"},
		{"an institution without the header pushes its own tenant", caamiToken, "", `{app="b"}`, 204, "caami"},
		{"an institution spoofing another tenant", caamiToken, "ona", `{app="c"}`, 403, ""},
		{"an agent pushing lines of its node", agentNode1, "ona", `{app="d", node="node-1"}`, 204, "ona"},
		{"an agent pushing lines of another node", agentNode1, "ona", `{app="e", node="node-2"}`, 403, ""},
		{"an agent pushing lines of no node", agentNode1, "ona", `{app="f"}`, 403, ""},
		{"an agent without the header", agentNode1, "", `{app="g", node="node-1"}`, 400, ""},
		{"an operator, who reads but never writes", adminToken, "caami", `{app="h"}`, 403, ""},
		{"a tenant that is not configured", agentNode1, "nobody", `{app="i", node="node-1"}`, 404, ""},
		{"no token", "", "caami", `{app="j"}`, 401, ""},
	}
	for _, c := range cases {
		a := e.pushProto(t, c.token, c.org, stream(c.labels, at, c.name))
		if a.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, a.code, a.body, c.code)
		}
		for _, tenant := range []string{"caami", "ona"} {
			stored := slices.ContainsFunc(e.storedLines(t, tenant), func(l logs.Line) bool { return l.Line == c.name })
			if stored != (tenant == c.storedIn) {
				t.Errorf("%s: stored in %s = %v", c.name, tenant, stored)
			}
		}
	}
}

func TestLokiLimitsAnswer400NamingTheStreamAndStoreTheValidLines(t *testing.T) {
	e := newEnv(t, nil, nil)
	at := now.Add(-time.Minute)
	var many []string
	for i := range 16 {
		many = append(many, fmt.Sprintf("l%02d=%q", i, "v"))
	}
	cases := []struct {
		name   string
		bad    push.Stream
		want   string
		stream string
	}{
		{"a line over max_line_bytes", stream(`{app="big"}`, at, strings.Repeat("x", 256<<10+1)),
			"entry 0: line is 262145 bytes, over the limit of 262144", `{app="big"}`},
		{"too many labels", stream("{"+strings.Join(many, ", ")+"}", at, "x"), "labels 16 labels, over the limit of 15", `{l00="v"`},
		{"a label name too long", stream(`{`+strings.Repeat("n", 1025)+`="v"}`, at, "x"), "is longer than 1024 bytes", `{nnnn`},
		{"a label value too long", stream(`{app="`+strings.Repeat("v", 2049)+`"}`, at, "x"), "the value of app is longer than 2048 bytes", `{app="vvvv`},
		{"an empty label value", stream(`{app=""}`, at, "x"), "the value of app is empty", `{app=""}`},
		{"a line older than the horizon", stream(`{app="old"}`, now.AddDate(-2, 0, 0), "x"), "entry 0: time", `{app="old"}`},
		{"a line from the future", stream(`{app="future"}`, now.Add(time.Hour), "x"), "more than 5m0s in the future", `{app="future"}`},
	}
	for i, c := range cases {
		good := stream(`{app="good"}`, at.Add(time.Duration(i)*time.Second), c.name)
		a := e.pushProto(t, caamiToken, "caami", good, c.bad)
		var body struct {
			Error  string `json:"error"`
			Detail struct {
				Problems []struct {
					Stream string `json:"stream"`
					Entry  *int   `json:"entry"`
					Field  string `json:"field"`
				} `json:"problems"`
			} `json:"detail"`
		}
		a.decode(t, &body)
		if a.code != http.StatusBadRequest || !strings.Contains(body.Error, c.want) || !strings.Contains(body.Error, "stream "+c.stream) ||
			!strings.Contains(body.Error, "1 of 2 line(s) rejected, the other 1 stored") {
			t.Errorf("%s: %d %s, want 400 naming stream %s and saying %q", c.name, a.code, a.body, c.stream, c.want)
		}
		if len(body.Detail.Problems) == 0 || !strings.HasPrefix(body.Detail.Problems[0].Stream, c.stream) {
			t.Errorf("%s: problems %+v do not name the stream", c.name, body.Detail.Problems)
		}
		if !slices.ContainsFunc(e.storedLines(t, "caami"), func(l logs.Line) bool { return l.Line == c.name }) {
			t.Errorf("%s: the valid line of the push was not stored", c.name)
		}
	}
	if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "logs", "tenant": "caami", "outcome": "rejected"}); n != float64(len(cases)) {
		t.Errorf("rejected lines = %v, want %d", n, len(cases))
	}
	if n := e.metric(t, "paasmeter_collector_loki_pushes_total", map[string]string{"tenant": "caami", "outcome": "rejected"}); n != float64(len(cases)) {
		t.Errorf("rejected pushes = %v, want %d", n, len(cases))
	}
}

func TestLokiIngestionRateAnswers429WithRetryAfterPerTenant(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.MaxLineBytes, cfg.Logs.IngestionRateBytes, cfg.Logs.IngestionBurstBytes = 1000, 1000, 2000
	e := newEnv(t, &cfg, nil)
	at := now.Add(-time.Minute)
	line := func(c byte, n int) string { return strings.Repeat(string(c), n) }

	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, line('a', 1000), line('b', 500))); a.code != http.StatusNoContent {
		t.Fatalf("a push within the burst: %d %s", a.code, a.body)
	}
	a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, line('c', 1000)))
	if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") != "1" || !strings.Contains(string(a.body), "ingestion rate limit exceeded for tenant caami (limit: 1000 bytes/sec)") {
		t.Fatalf("a push past the rate: %d Retry-After %q %s, want 429 with Retry-After 1", a.code, a.header.Get("Retry-After"), a.body)
	}
	// Another tenant has its own bucket.
	if a := e.pushProto(t, onaToken, "ona", stream(`{app="a"}`, at, line('d', 750), line('e', 750))); a.code != http.StatusNoContent {
		t.Errorf("ona's push while caami is limited: %d %s", a.code, a.body)
	}
	e.clock.Advance(time.Second)
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, line('c', 1000))); a.code != http.StatusNoContent {
		t.Errorf("the same push a second later: %d %s", a.code, a.body)
	}
	if a := e.pushProto(t, caamiToken, "caami", stream(`{app="a"}`, at, line('e', 1000), line('f', 1000), line('g', 1))); a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("a push larger than the burst: %d %s, want 413: it could never pass", a.code, a.body)
	}
	if got := len(e.storedLines(t, "caami")); got != 3 {
		t.Errorf("caami has %d lines, want 3: a limited push stores nothing", got)
	}
	for outcome, want := range map[string]float64{"accepted": 2, "rate_limited": 1, "rejected": 1} {
		if n := e.metric(t, "paasmeter_collector_loki_pushes_total", map[string]string{"tenant": "caami", "outcome": outcome}); n != want {
			t.Errorf("loki_pushes_total{outcome=%s} = %v, want %v", outcome, n, want)
		}
	}
	if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "logs", "tenant": "caami", "outcome": "rate_limited"}); n != 1 {
		t.Errorf("rate-limited lines = %v, want 1", n)
	}
}

func TestLokiPushRefusesBadBodies(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.MaxBodyBytes = 4096
	e := newEnv(t, &cfg, nil)
	big := stream(`{app="a"}`, now, strings.Repeat("x", 8000))
	raw, err := (&push.PushRequest{Streams: []push.Stream{big}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	post := func(body []byte, header ...string) answer {
		return do(t, "POST", e.api.URL+"/loki/api/v1/push", caamiToken, bytes.NewReader(body), append(header, "X-Scope-OrgID", "caami")...)
	}
	cases := []struct {
		name string
		a    answer
		code int
		want string
	}{
		{"plain text", post([]byte("hello"), "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "unsupported media type"},
		{"protobuf that is not snappy", post([]byte("\xff\xff\xff\xff\xff"), "Content-Type", "application/x-protobuf"), http.StatusBadRequest, "not snappy-compressed"},
		{"a snappy body that decompresses past max_body_bytes", post(snappy.Encode(nil, raw), "Content-Type", "application/x-protobuf"),
			http.StatusRequestEntityTooLarge, "push exceeds 4096 bytes"},
		{"a gzip body that decompresses past max_body_bytes", post(gzipped(t, []byte(`{"streams":[{"stream":{"app":"a"},"values":[["1","`+strings.Repeat("x", 8000)+`"]]}]}`)),
			"Content-Type", "application/json", "Content-Encoding", "gzip"), http.StatusRequestEntityTooLarge, "push exceeds 4096 bytes"},
		{"malformed JSON", post([]byte(`{"streams":[`), "Content-Type", "application/json"), http.StatusBadRequest, "not a Loki JSON push"},
		{"an unknown Content-Encoding", post([]byte(`{}`), "Content-Type", "application/json", "Content-Encoding", "br"), http.StatusBadRequest, "Content-Encoding"},
	}
	for _, c := range cases {
		if c.a.code != c.code || !strings.Contains(string(c.a.body), c.want) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, c.a.code, c.a.body, c.code, c.want)
		}
	}
}

// lokiQuery is the answer of query_range.
type lokiQuery struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

func (e *env) lokiGet(t *testing.T, token, org, path string, params url.Values) answer {
	t.Helper()
	return do(t, "GET", e.api.URL+path+"?"+params.Encode(), token, nil, "X-Scope-OrgID", org)
}

func TestLokiReadAPIAnswersAsLokiDoesForGrafana(t *testing.T) {
	e := newEnv(t, nil, nil)
	at := now.Add(-10 * time.Minute)
	pushed := []push.Stream{
		stream(`{app="pricing", env="prod"}`, at, "GET /price 200"),
		stream(`{app="pricing", env="prod"}`, at.Add(time.Second), "GET /price 500"),
		stream(`{app="records", env="dev"}`, at.Add(2*time.Second), "error: disk full"),
	}
	if a := e.pushProto(t, caamiToken, "caami", pushed...); a.code != 204 {
		t.Fatalf("push: %d %s", a.code, a.body)
	}
	if a := e.pushProto(t, onaToken, "ona", stream(`{app="ona-app", env="prod"}`, at, "ona's line")); a.code != 204 {
		t.Fatalf("push: %d %s", a.code, a.body)
	}

	query := func(params url.Values) lokiQuery {
		t.Helper()
		a := e.lokiGet(t, caamiToken, "caami", "/loki/api/v1/query_range", params)
		if a.code != 200 {
			t.Fatalf("query_range %v: %d %s", params, a.code, a.body)
		}
		var q lokiQuery
		a.decode(t, &q)
		if q.Status != "success" || q.Data.ResultType != "streams" {
			t.Fatalf("query_range answered %s", a.body)
		}
		return q
	}
	q := query(url.Values{"query": {`{env=~"prod|dev"} != "200"`}, "start": {ns(at)}, "end": {ns(now)}, "limit": {"1000"}, "direction": {"backward"}, "step": {"1s"}})
	var got []string
	for _, r := range q.Data.Result {
		for _, v := range r.Values {
			got = append(got, logs.StreamKey(r.Stream)+" "+v[0]+" "+v[1])
		}
	}
	want := []string{
		`{app="records", env="dev"} ` + ns(at.Add(2*time.Second)) + " error: disk full",
		`{app="pricing", env="prod"} ` + ns(at.Add(time.Second)) + " GET /price 500",
	}
	if !slices.Equal(got, want) {
		t.Errorf("query_range backward:\n%q\nwant\n%q", got, want)
	}
	// Start and end also come as Unix seconds (Grafana's older form) and RFC 3339; forward gives the oldest first.
	q = query(url.Values{"query": {`{app="pricing"} |~ "GET /price \\d+"`}, "start": {strconv.FormatInt(at.Unix(), 10)},
		"end": {now.Format(time.RFC3339Nano)}, "direction": {"forward"}})
	if len(q.Data.Result) != 1 || len(q.Data.Result[0].Values) != 2 || q.Data.Result[0].Values[0][1] != "GET /price 200" {
		t.Errorf("query_range forward: %+v", q.Data.Result)
	}
	// Without start and end: the last hour.
	if q := query(url.Values{"query": {`{app="records"}`}}); len(q.Data.Result) != 1 {
		t.Errorf("query_range over the default hour: %+v", q.Data.Result)
	}

	list := func(path string) []string {
		t.Helper()
		a := e.lokiGet(t, caamiToken, "caami", path, url.Values{})
		var resp struct {
			Status string   `json:"status"`
			Data   []string `json:"data"`
		}
		a.decode(t, &resp)
		if a.code != 200 || resp.Status != "success" {
			t.Fatalf("%s: %d %s", path, a.code, a.body)
		}
		return resp.Data
	}
	if got := list("/loki/api/v1/labels"); !slices.Equal(got, []string{"app", "env"}) {
		t.Errorf("labels = %q", got)
	}
	if got := list("/loki/api/v1/label"); !slices.Equal(got, []string{"app", "env"}) {
		t.Errorf("label (the older name) = %q", got)
	}
	if got := list("/loki/api/v1/label/app/values"); !slices.Equal(got, []string{"pricing", "records"}) {
		t.Errorf("app values = %q, want caami's only", got)
	}
	if got := list("/loki/api/v1/label/nope/values"); got == nil || len(got) != 0 {
		t.Errorf("values of an unknown label = %#v, want []", got)
	}
}

func TestLokiQueriesOutsideTheSubsetAnswer400SayingWhatIsUnsupported(t *testing.T) {
	e := newEnv(t, nil, nil)
	cases := []struct {
		params url.Values
		want   string
	}{
		{url.Values{"query": {`sum(count_over_time({app="a"}[1m]))`}}, "metric queries (sum"},
		{url.Values{"query": {`{app="a"} | json`}}, "| json is not supported"},
		{url.Values{}, "query: is required"},
		{url.Values{"query": {`{app="a"}`}, "limit": {"5001"}}, "limit"},
		{url.Values{"query": {`{app="a"}`}, "start": {"yesterday"}}, "start"},
		{url.Values{"query": {`{app="a"}`}, "start": {ns(now)}, "end": {ns(now.Add(-time.Hour))}}, "must be before end"},
		{url.Values{"query": {`{app="a"}`}, "direction": {"up"}}, "direction"},
	}
	for _, c := range cases {
		a := e.lokiGet(t, caamiToken, "caami", "/loki/api/v1/query_range", c.params)
		if a.code != http.StatusBadRequest || !strings.Contains(string(a.body), c.want) {
			t.Errorf("query_range %v: %d %s, want 400 saying %q", c.params, a.code, a.body, c.want)
		}
	}
	var body struct{ Error string }
	a := e.lokiGet(t, caamiToken, "caami", "/loki/api/v1/labels", url.Values{"start": {"soon"}})
	if err := json.Unmarshal(a.body, &body); err != nil || a.code != 400 || !strings.Contains(body.Error, "start") {
		t.Errorf("labels with a bad start: %d %s", a.code, a.body)
	}
}
