package logs_test

import (
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/paasmeter/paasmeter/batch/batchtest"
	"github.com/paasmeter/paasmeter/logs"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func line(text string) logs.Line {
	l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: "caami", Time: now.Add(-time.Minute), Line: text,
		Labels: map[string]string{logs.LabelApp: "web", logs.LabelStream: "stdout"}}
	l.SetID()
	return l
}

func encode(lines ...logs.Line) string { return batchtest.Body(logs.EncodeBatch, lines...) }

func TestTruncateCutsToTheLimitOnARuneBoundaryAndSaysHowMuch(t *testing.T) {
	tests := map[string]struct {
		in   string
		max  int
		want string
	}{
		"a line that fits is unchanged":            {"hello", 10, "hello"},
		"a long line ends with the marker":         {strings.Repeat("a", 100), 40, strings.Repeat("a", 15) + " …[truncated 85 bytes]"},
		"a cut never splits a multi-byte rune":     {strings.Repeat("é", 50), 40, strings.Repeat("é", 7) + " …[truncated 86 bytes]"},
		"a limit below the marker keeps no text":   {strings.Repeat("a", 100), 5, " …[truncated 100 bytes]"},
		"a line exactly at the limit is unchanged": {strings.Repeat("a", 40), 40, strings.Repeat("a", 40)},
	}
	for name, tc := range tests {
		got, cut := logs.Truncate(tc.in, tc.max)
		if got != tc.want || cut != (tc.in != tc.want) || !utf8.ValidString(got) {
			t.Errorf("%s: got %q (cut %v), want %q", name, got, cut, tc.want)
		}
		if cut && tc.max >= 30 && len(got) > tc.max {
			t.Errorf("%s: %d bytes, over the limit of %d", name, len(got), tc.max)
		}
	}
}

func TestALineKeptOnlyInPartCountsEveryByteCut(t *testing.T) {
	got, cut := logs.TruncateOf(strings.Repeat("a", 100), 5<<20, 60)
	if want := strings.Repeat("a", 31) + " …[truncated 5242849 bytes]"; got != want || !cut {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTheStreamKeyIsCanonicalWhateverTheLabelOrder(t *testing.T) {
	a := logs.StreamKey(map[string]string{"b": "2", "a": `say "hi"`})
	if a != `{a="say \"hi\"", b="2"}` {
		t.Errorf("stream key %s", a)
	}
	l1, l2 := line("x"), line("x")
	l2.Labels = map[string]string{logs.LabelStream: "stdout", logs.LabelApp: "web"}
	l2.SetID()
	if l1.ID != l2.ID {
		t.Error("the same line of the same stream has two ids")
	}
	l2.Seq = 1
	l2.SetID()
	if l1.ID == l2.ID {
		t.Error("two lines of the same text and time but another seq share an id")
	}
}

func TestABadLineIsRefusedNamingItsField(t *testing.T) {
	lim := logs.DefaultLimits()
	tests := map[string]struct {
		change func(l *logs.Line)
		field  string
	}{
		"a line without a tenant":           {func(l *logs.Line) { l.Tenant = "" }, "tenant"},
		"a stream without labels":           {func(l *logs.Line) { l.Labels = nil }, "labels"},
		"a label name Loki would refuse":    {func(l *logs.Line) { l.Labels["bad-name"] = "x" }, "labels"},
		"an empty label value":              {func(l *logs.Line) { l.Labels["team"] = "" }, "labels"},
		"a line too far in the future":      {func(l *logs.Line) { l.Time = now.Add(time.Hour) }, "time"},
		"a line over the size limit":        {func(l *logs.Line) { l.Line = strings.Repeat("a", lim.MaxLineBytes+1) }, "line"},
		"a line that is not UTF-8":          {func(l *logs.Line) { l.Line = "\xff\xfe" }, "line"},
		"a line whose id is not its own":    {func(l *logs.Line) { l.Line = "changed" }, "id"},
		"a line with the collector's stamp": {func(l *logs.Line) { l.ReceivedAt = now }, "received_at"},
		"a line of an unknown schema":       {func(l *logs.Line) { l.SchemaVersion = 9 }, "schema_version"},
		"a stream with too many labels":     {func(l *logs.Line) { addLabels(l, 20) }, "labels"},
	}
	for name, tc := range tests {
		l := line("hello")
		tc.change(&l)
		if tc.field != "id" {
			l.SetID()
		}
		ps := logs.Validate(&l, 3, now, lim)
		found := false
		for _, p := range ps {
			found = found || (p.Field == tc.field && p.Index == 3)
		}
		if !found {
			t.Errorf("%s: problems %v do not name %s", name, ps, tc.field)
		}
	}
	ok := line("hello")
	if ps := logs.Validate(&ok, 0, now, lim); len(ps) > 0 {
		t.Errorf("a good line has problems: %v", ps)
	}
}

func addLabels(l *logs.Line, n int) {
	for i := range n {
		l.Labels[string(rune('a'+i))+"x"] = "v"
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encode(line("one"), line("two")))
	f.Add(`{"records":[{"labels":{"a":1}}]}`)
	f.Add(`{"records":[{"time":"yesterday","seq":-1}]}`)
	f.Add(`{"records":[]}`)
	lim := logs.DefaultLimits()
	lim.MaxLines = 20
	batchtest.FuzzDecoder(f, logs.EncodeBatch, func(r io.Reader) ([]logs.Line, error) { return logs.DecodeBatch(r, now, lim) },
		func(_ int, again, first *logs.Line) bool { return again.ID == first.ID && again.Line == first.Line })
}
