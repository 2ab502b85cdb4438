package readquery

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
)

// FuzzParseQueries feeds arbitrary query strings to the decoders of the read
// endpoints' parameters: usage (months, dates, lists), logs (times, label
// matchers, filters, limit, direction, cursor) and Loki's (start, end, since,
// limit, direction). None panics; every problem names a parameter; and what
// they accept is a range the store can run: from before to, a log range no
// longer than collector.logs.max_query_range, a limit from 1 to the most.
func FuzzParseQueries(f *testing.F) {
	now := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		f.Fatal(err)
	}
	// The collector's default bound on a log range.
	p := Parser{Location: loc, Clock: clock.NewManual(now), MaxLogRange: 31 * 24 * time.Hour}
	cursor := SealCursor("caami", base64.RawURLEncoding.EncodeToString([]byte("1763200000000000000:3:"+strings.Repeat("ab", 16))))
	for _, seed := range []string{
		"", "month=2026-11", "from=2026-11-01&to=2026-11-15T10:00:00Z&group_by=project,app&meter=cpu_ns&environment=prod",
		"month=2026-13&from=x", "project=a,b&app=&environment=qa&bogus=1",
		"from=2026-11-15T10:00:00Z&to=2026-11-15T11:00:00.5Z&app=pricing&container=web-1&env=prod&contains=error&regex=time(out)?&limit=500&direction=forward&cursor=" + cursor,
		"regex=(&limit=0&direction=up&cursor=abc.def",
		"start=1763200000&end=1763203600.25&limit=5000&direction=BACKWARD", "start=1763200000000000000&since=1h", "since=-1h&end=2026-11-15T12:00:00Z",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, _ := url.ParseQuery(raw) // as r.URL.Query(): what parses
		uq, problems := p.Usage("caami", v)
		checkProblems(t, "usage", problems)
		if len(problems) == 0 && !uq.From.Before(uq.To) {
			t.Fatalf("usage query %q accepted from %s to %s", raw, uq.From, uq.To)
		}
		lq, problems := p.Logs("caami", v)
		checkProblems(t, "logs", problems)
		if len(problems) == 0 {
			checkLogRange(t, p, raw, lq.From, lq.To)
			if lq.Limit < 1 || lq.Limit > metering.MaxLogLimit {
				t.Fatalf("logs query %q accepted with limit %d", raw, lq.Limit)
			}
		}
		if from, to, err := p.LokiRange(v, DefaultLogRange); err == nil {
			checkLogRange(t, p, raw, from, to)
		}
	})
}

func checkProblems(t *testing.T, what string, problems []route.FieldError) {
	t.Helper()
	for _, p := range problems {
		if p.Field == "" || p.Reason == "" {
			t.Fatalf("%s query: a problem without a parameter or a reason: %+v", what, p)
		}
	}
}

func checkLogRange(t *testing.T, p Parser, raw string, from, to time.Time) {
	t.Helper()
	if !from.Before(to) || to.Sub(from) > p.MaxLogRange {
		t.Fatalf("query %q accepted from %s to %s", raw, from, to)
	}
}
