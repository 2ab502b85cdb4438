package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
)

// logLine returns a valid line of tenant's stream app/stream at Base+offset.
func logLine(tenant, app, stream string, offset time.Duration, seq int, text string) logs.Line {
	l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: tenant, Time: Base.Add(offset), Seq: seq, Line: text,
		Labels: map[string]string{logs.LabelApp: app, logs.LabelStream: stream, logs.LabelEnv: "prod"}}
	l.SetID()
	l.ReceivedAt = Base.Add(time.Hour)
	return l
}

// queryAll pages through q (limit per page) and returns every line.
func queryAll(t *testing.T, s metering.Store, q metering.LogQuery) []logs.Line {
	t.Helper()
	if q.From.IsZero() {
		q.From, q.To = Base.Add(-time.Hour), Base.Add(24*time.Hour)
	}
	if q.Limit == 0 {
		q.Limit = metering.MaxLogLimit
	}
	var out []logs.Line
	for pages := 0; ; pages++ {
		page, err := metering.QueryLogs(ctx(t), s, q)
		if err != nil {
			t.Fatalf("QueryLogs: %v", err)
		}
		out = append(out, page.Lines...)
		if page.Next == "" {
			return out
		}
		if pages > 10000 {
			t.Fatal("QueryLogs keeps returning a next page")
		}
		q.Cursor = page.Next
	}
}

func texts(lines []logs.Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Line
	}
	return out
}

func selector(t *testing.T, ms [][3]string, fs [][2]string) logs.Selector {
	t.Helper()
	var sel logs.Selector
	for _, m := range ms {
		mm, err := logs.NewMatcher(m[0], logs.MatchOp(m[1]), m[2])
		if err != nil {
			t.Fatal(err)
		}
		sel.Matchers = append(sel.Matchers, mm)
	}
	for _, f := range fs {
		ff, err := logs.NewFilter(logs.FilterOp(f[0]), f[1])
		if err != nil {
			t.Fatal(err)
		}
		sel.Filters = append(sel.Filters, ff)
	}
	return sel
}

func testLogRoundTrip(t *testing.T, s metering.Store) {
	in := []logs.Line{
		logLine("caami", "web", "stdout", time.Second, 0, "first"),
		logLine("caami", "web", "stdout", time.Second, 1, "second, same nanosecond"),
		logLine("caami", "web", "stderr", 2*time.Second, 0, "an error: ünïcödé"),
	}
	mustAppend(t, s.AppendLogs, in)
	got := queryAll(t, s, metering.LogQuery{Tenant: "caami"})
	want := []logs.Line{in[2], in[1], in[0]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
	fwd := queryAll(t, s, metering.LogQuery{Tenant: "caami", Forward: true})
	if !slices.Equal(texts(fwd), []string{"first", "second, same nanosecond", "an error: ünïcödé"}) {
		t.Errorf("forward read gives %q", texts(fwd))
	}
}

func testLogResend(t *testing.T, s metering.Store) {
	first := []logs.Line{logLine("caami", "web", "stdout", time.Second, 0, "a"), logLine("caami", "web", "stdout", 2*time.Second, 0, "b")}
	mustAppend(t, s.AppendLogs, first)
	again := slices.Clone(first)
	for i := range again {
		again[i].ReceivedAt = Base.Add(2 * time.Hour)
	}
	again = append(again, logLine("caami", "web", "stdout", 3*time.Second, 0, "c"), again[0])
	res := mustAppend(t, s.AppendLogs, again)
	if !slices.Equal(res.Duplicates, []int{0, 1, 3}) {
		t.Errorf("duplicates %v, want [0 1 3]", res.Duplicates)
	}
	got := queryAll(t, s, metering.LogQuery{Tenant: "caami", Forward: true})
	if !slices.Equal(texts(got), []string{"a", "b", "c"}) || !got[0].ReceivedAt.Equal(Base.Add(time.Hour)) {
		t.Errorf("stored %q, first received %s; want a, b, c once and the first arrival kept", texts(got), got[0].ReceivedAt)
	}
}

func testLogSelectors(t *testing.T, s metering.Store) {
	mustAppend(t, s.AppendLogs, []logs.Line{
		logLine("caami", "web", "stdout", 1*time.Second, 0, "GET /healthz 200"),
		logLine("caami", "web", "stderr", 2*time.Second, 0, "panic: nil map"),
		logLine("caami", "api", "stdout", 3*time.Second, 0, "GET /claims 500"),
		logLine("caami", "worker", "stdout", 4*time.Second, 0, "job 17 done"),
	})
	tests := map[string]struct {
		matchers [][3]string
		filters  [][2]string
		want     []string
	}{
		"an equality matcher picks one app":          {[][3]string{{"app", "=", "web"}}, nil, []string{"GET /healthz 200", "panic: nil map"}},
		"a negative matcher leaves one app out":      {[][3]string{{"app", "!=", "web"}}, nil, []string{"GET /claims 500", "job 17 done"}},
		"a regexp matcher is anchored":               {[][3]string{{"app", "=~", "w.*"}}, nil, []string{"GET /healthz 200", "panic: nil map", "job 17 done"}},
		"a negative regexp matcher excludes":         {[][3]string{{"app", "!~", "web|api"}}, nil, []string{"job 17 done"}},
		"a missing label matches the empty value":    {[][3]string{{"team", "=", ""}, {"stream", "=", "stderr"}}, nil, []string{"panic: nil map"}},
		"a contains filter keeps matching lines":     {nil, [][2]string{{"|=", "GET"}}, []string{"GET /healthz 200", "GET /claims 500"}},
		"a not-contains filter drops them":           {nil, [][2]string{{"!=", "GET"}}, []string{"panic: nil map", "job 17 done"}},
		"a regexp filter matches anywhere":           {nil, [][2]string{{"|~", `5\d\d$`}}, []string{"GET /claims 500"}},
		"a negative regexp filter drops matches":     {nil, [][2]string{{"!~", `^GET`}}, []string{"panic: nil map", "job 17 done"}},
		"matchers and filters all apply":             {[][3]string{{"stream", "=", "stdout"}}, [][2]string{{"|=", "GET"}, {"!=", "500"}}, []string{"GET /healthz 200"}},
		"a selector that matches no stream is empty": {[][3]string{{"app", "=", "nope"}}, nil, nil},
	}
	for name, tc := range tests {
		got := texts(queryAll(t, s, metering.LogQuery{Tenant: "caami", Forward: true, Selector: selector(t, tc.matchers, tc.filters)}))
		if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

func testLogPages(t *testing.T, s metering.Store) {
	var in []logs.Line
	for i := range 250 {
		// Several lines share a timestamp: the cursor must order them by seq and id.
		in = append(in, logLine("caami", fmt.Sprintf("app%d", i%3), "stdout", time.Duration(i/4)*time.Millisecond, i%4, fmt.Sprintf("line %03d", i)))
	}
	mustAppend(t, s.AppendLogs, in)
	for _, forward := range []bool{false, true} {
		got := queryAll(t, s, metering.LogQuery{Tenant: "caami", Limit: 7, Forward: forward,
			Selector: selector(t, nil, [][2]string{{"!=", "line 100"}})})
		if len(got) != 249 {
			t.Fatalf("forward=%v: %d lines through the pages, want 249", forward, len(got))
		}
		seen := map[string]bool{}
		for i, l := range got {
			if seen[l.ID] {
				t.Fatalf("forward=%v: %q returned twice", forward, l.Line)
			}
			seen[l.ID] = true
			if i > 0 {
				prev := got[i-1]
				before := prev.Time.Before(l.Time) || (prev.Time.Equal(l.Time) && prev.Seq <= l.Seq)
				if before != forward {
					t.Fatalf("forward=%v: %q then %q is out of order", forward, prev.Line, l.Line)
				}
			}
		}
	}
	if _, err := metering.QueryLogs(ctx(t), s, metering.LogQuery{Tenant: "caami", From: Base, To: Base.Add(time.Hour), Limit: 10, Cursor: "garbage!"}); err == nil {
		t.Error("a made-up cursor is accepted")
	}
}

// testLogScanRefusals reads, across the store's chunks of lines and of
// bytes, pages that the reader ends by refusing a line (as a byte budget
// does): together they are every line once, in order.
func testLogScanRefusals(t *testing.T, s metering.Store) {
	var in []logs.Line
	big := strings.Repeat("b", 200<<10)
	for i := range 1300 {
		text := fmt.Sprintf("line %04d", i)
		if i%100 == 0 {
			text += big // 13 lines of 200 KiB: chunks also end on their bytes
		}
		in = append(in, logLine("caami", "app", "stdout", time.Duration(i)*time.Millisecond, 0, text))
	}
	mustAppend(t, s.AppendLogs, in)
	q := metering.LogQuery{Tenant: "caami", From: Base, To: Base.Add(time.Hour), Limit: metering.MaxLogLimit, Forward: true}
	var got []string
	for pages := 1; ; pages++ {
		taken := 0
		next, err := s.ScanLogs(ctx(t), q, func(l logs.Line) bool {
			if taken == 400 {
				return false
			}
			taken++
			got = append(got, l.Line)
			return true
		})
		if err != nil {
			t.Fatalf("ScanLogs: %v", err)
		}
		if next == "" {
			if pages != 4 {
				t.Errorf("%d pages of at most 400 of 1300 lines, want 4", pages)
			}
			break
		}
		if pages > 4 {
			t.Fatal("ScanLogs keeps returning a next page")
		}
		q.Cursor = next
	}
	if want := texts(in); !slices.Equal(got, want) {
		t.Errorf("the pages gave %d lines, want the %d in order", len(got), len(want))
	}
}

func testLogTenantIsolation(t *testing.T, s metering.Store) {
	mustAppend(t, s.AppendLogs, []logs.Line{
		logLine("caami", "web", "stdout", time.Second, 0, "caami's line"),
		logLine("ona", "secret", "stdout", time.Second, 0, "ona's line"),
	})
	if got := texts(queryAll(t, s, metering.LogQuery{Tenant: "caami"})); !slices.Equal(got, []string{"caami's line"}) {
		t.Errorf("caami reads %q", got)
	}
	from, to := Base, Base.Add(time.Hour)
	names, err := s.LogLabels(ctx(t), "caami", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"app", "env", "stream"}) {
		t.Errorf("caami's label names are %q", names)
	}
	apps, err := s.LogLabelValues(ctx(t), "caami", "app", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(apps, []string{"web"}) {
		t.Errorf("caami's apps are %q: another tenant's leaked", apps)
	}
	if none, err := s.LogLabelValues(ctx(t), "caami", "app", to, to.Add(time.Hour)); err != nil || len(none) != 0 {
		t.Errorf("label values of a range without lines: %q, %v", none, err)
	}
}

func testLogRetention(t *testing.T, s metering.Store) {
	mustAppend(t, s.AppendLogs, []logs.Line{
		logLine("caami", "web", "stdout", time.Second, 0, "old"),
		logLine("caami", "web", "stdout", 2*time.Hour, 0, "recent"),
		logLine("ona", "web", "stdout", time.Second, 0, "ona's old"),
	})
	n, err := s.DeleteLogs(ctx(t), "caami", Base.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteLogs deleted %d (%v), want 1", n, err)
	}
	if got := texts(queryAll(t, s, metering.LogQuery{Tenant: "caami"})); !slices.Equal(got, []string{"recent"}) {
		t.Errorf("caami keeps %q, want only the recent line", got)
	}
	if got := texts(queryAll(t, s, metering.LogQuery{Tenant: "ona"})); !slices.Equal(got, []string{"ona's old"}) {
		t.Errorf("ona keeps %q: another tenant's retention touched it", got)
	}
}

func testLogStreamCount(t *testing.T, s metering.Store) {
	web, api := logLine("caami", "web", "stdout", time.Second, 0, "w"), logLine("caami", "api", "stdout", time.Second, 0, "a")
	mustAppend(t, s.AppendLogs, []logs.Line{web, api, logLine("ona", "web", "stdout", time.Second, 0, "o")})
	key := func(l logs.Line) string { return logs.StreamKey(l.Labels) }
	other := logLine("caami", "jobs", "stderr", time.Second, 0, "j")
	for _, c := range []struct {
		tenant                string
		keys                  []string
		wantStored, wantAdded int
	}{
		{"caami", []string{key(web), key(api)}, 2, 0},
		{"caami", []string{key(web), key(other), key(other)}, 2, 1},
		{"caami", nil, 2, 0},
		{"ona", []string{key(web), key(api)}, 1, 1},
		{"nobody", []string{key(web)}, 0, 1},
	} {
		stored, missing, err := s.CountLogStreams(ctx(t), c.tenant, c.keys)
		if err != nil || stored != c.wantStored || missing != c.wantAdded {
			t.Errorf("CountLogStreams(%s, %d keys) = %d stored, %d missing, %v; want %d and %d", c.tenant, len(c.keys), stored, missing, err, c.wantStored, c.wantAdded)
		}
	}
}

// testLogManyStreams: a query selecting more streams than SQLite binds
// variables (32,766) or ClickHouse's max_query_size holds as ids.
func testLogManyStreams(t *testing.T, s metering.Store) {
	const n = 40_000
	lines := make([]logs.Line, n)
	for i := range lines {
		lines[i] = logLine("caami", fmt.Sprintf("app-%05d", i), "stdout", time.Duration(i)*time.Millisecond, 0, fmt.Sprintf("line %d", i))
	}
	mustAppend(t, s.AppendLogs, lines)
	sel := selector(t, [][3]string{{logs.LabelApp, "=~", "app-.*"}}, nil)
	page, err := metering.QueryLogs(ctx(t), s, metering.LogQuery{Tenant: "caami", Selector: sel, From: Base, To: Base.Add(time.Hour), Limit: 10})
	if err != nil {
		t.Fatalf("QueryLogs over %d streams: %v", n, err)
	}
	if got := texts(page.Lines); len(got) != 10 || got[0] != fmt.Sprintf("line %d", n-1) {
		t.Errorf("the newest page over %d streams: %q", n, got)
	}
	apps, err := s.LogLabelValues(ctx(t), "caami", logs.LabelApp, Base, Base.Add(time.Hour))
	if err != nil || len(apps) != n {
		t.Errorf("label values over %d streams: %d values, %v", n, len(apps), err)
	}
	if stored, _, err := s.CountLogStreams(ctx(t), "caami", nil); err != nil || stored != n {
		t.Errorf("CountLogStreams = %d, %v; want %d", stored, err, n)
	}
}

func testLogRetentionOfStreams(t *testing.T, s metering.Store) {
	mustAppend(t, s.AppendLogs, []logs.Line{
		logLine("caami", "crashed-1", "stdout", time.Second, 0, "old"),
		logLine("caami", "crashed-2", "stdout", time.Second, 0, "old"),
		logLine("caami", "web", "stdout", time.Second, 0, "old"),
		logLine("caami", "web", "stdout", 2*time.Hour, 0, "recent"),
		logLine("ona", "crashed-1", "stdout", time.Second, 0, "ona's old"),
	})
	if _, err := s.DeleteLogs(ctx(t), "caami", Base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if stored, _, err := s.CountLogStreams(ctx(t), "caami", nil); err != nil || stored != 1 {
		t.Errorf("caami has %d streams (%v) after retention, want 1 (web, which keeps a line)", stored, err)
	}
	if stored, _, err := s.CountLogStreams(ctx(t), "ona", nil); err != nil || stored != 1 {
		t.Errorf("ona has %d streams (%v), want 1: another tenant's retention touched them", stored, err)
	}
	// A stream that comes back after retention reads as before.
	mustAppend(t, s.AppendLogs, []logs.Line{logLine("caami", "crashed-1", "stdout", 3*time.Hour, 0, "back")})
	sel := selector(t, [][3]string{{logs.LabelApp, "=", "crashed-1"}}, nil)
	if got := texts(queryAll(t, s, metering.LogQuery{Tenant: "caami", Selector: sel})); !slices.Equal(got, []string{"back"}) {
		t.Errorf("the stream that came back reads %q", got)
	}
}

// testLogRetentionRacingAppends runs retention while lines arrive in the
// streams it is emptying: round after round, a stream whose only line ages
// out gets a recent one while DeleteLogs runs. Whichever comes first, the
// recent line must read back with its stream's labels, and the stream must
// count as stored: retention may take a stream only with no line left.
func testLogRetentionRacingAppends(t *testing.T, s metering.Store) {
	const rounds = 8
	for i := range rounds {
		app := fmt.Sprintf("crashloop-%d", i)
		mustAppend(t, s.AppendLogs, []logs.Line{logLine("caami", app, "stdout", time.Second, 0, "old")})
		done, c := make(chan error, 1), ctx(t)
		go func() {
			_, err := s.DeleteLogs(c, "caami", Base.Add(time.Hour))
			done <- err
		}()
		if _, err := s.AppendLogs(ctx(t), []logs.Line{logLine("caami", app, "stdout", 2*time.Hour, 0, "recent")}); err != nil {
			t.Fatalf("round %d: append while retention runs: %v", i, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: retention: %v", i, err)
		}
		sel := selector(t, [][3]string{{logs.LabelApp, "=", app}}, nil)
		got := queryAll(t, s, metering.LogQuery{Tenant: "caami", Selector: sel})
		if len(got) != 1 || got[0].Line != "recent" || got[0].Labels[logs.LabelApp] != app {
			t.Fatalf("round %d: the stream that got a line during retention reads %v", i, got)
		}
	}
	if stored, _, err := s.CountLogStreams(ctx(t), "caami", nil); err != nil || stored != rounds {
		t.Errorf("caami has %d streams (%v), want the %d that each kept a recent line", stored, err, rounds)
	}
}
