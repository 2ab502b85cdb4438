package tail

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
)

// rig is a tailer whose readers are fed by hand.
type rig struct {
	t   *testing.T
	tl  *Tailer
	reg *prometheus.Registry
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	reg := prometheus.NewRegistry()
	tl, err := New(Options{Config: cfg, Node: "node-1", Engine: noEngine{}, Spool: sp, StatePath: filepath.Join(t.TempDir(), "checkpoints.json"), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, tl: tl, reg: reg}
}

func testContainer(name string) engine.Container {
	return engine.Container{ID: name + "-id", Name: name, Tenant: "caami", Project: "claims", App: "pricing", Env: "prod"}
}

// read feeds msgs to a new reader of tc, as one stream of the engine, and
// returns the lines handed to the spool writer.
func (r *rig) read(tc *container, stopped bool, msgs ...engine.LogMessage) []logs.Line {
	r.t.Helper()
	rd := &reader{ctx: context.Background(), t: r.tl, tc: tc, open: map[string]*readStream{}}
	for _, m := range msgs {
		if err := rd.message(m); err != nil {
			r.t.Fatal(err)
		}
	}
	if stopped {
		if err := rd.finish(); err != nil {
			r.t.Fatal(err)
		}
	}
	var out []logs.Line
	for len(r.tl.lines) > 0 {
		var l logs.Line
		if err := json.Unmarshal(<-r.tl.lines, &l); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func (r *rig) count(tc *container, outcome string) float64 {
	return testutil.ToFloat64(r.tl.m.lines.WithLabelValues(append(seriesLabels(tc.c, "node-1"), outcome)...))
}

var t0 = time.Date(2026, 11, 30, 9, 0, 0, 123456789, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func out(ms int, text string) engine.LogMessage {
	return engine.LogMessage{Stream: engine.Stdout, Time: at(ms), Text: []byte(text)}
}

func errOut(ms int, text string) engine.LogMessage {
	return engine.LogMessage{Stream: engine.Stderr, Time: at(ms), Text: []byte(text)}
}

func piece(ms int, text string) engine.LogMessage {
	m := out(ms, text)
	m.Partial = true
	return m
}

type got struct {
	stream, text string
	ms, seq      int
}

func summary(lines []logs.Line) []got {
	var g []got
	for _, l := range lines {
		g = append(g, got{l.Labels[logs.LabelStream], l.Line, int(l.Time.Sub(t0) / time.Millisecond), l.Seq})
	}
	return g
}

func same(a, b []got) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLinesAreLabelledNumberedPerStreamAndTimeAndCarryTheirId(t *testing.T) {
	r := newRig(t, DefaultConfig())
	tc := r.tl.add(testContainer("web-1"), savedContainer{})
	lines := r.read(tc, false, out(0, "a"), out(0, "b"), errOut(0, "e"), out(1, "c"))
	want := []got{{"stdout", "a", 0, 0}, {"stdout", "b", 0, 1}, {"stderr", "e", 0, 0}, {"stdout", "c", 1, 0}}
	if g := summary(lines); !same(g, want) {
		t.Fatalf("got %v, want %v", g, want)
	}
	l := lines[0]
	wantLabels := map[string]string{"project": "claims", "app": "pricing", "env": "prod", "node": "node-1", "container": "web-1", "stream": "stdout"}
	if logs.StreamKey(l.Labels) != logs.StreamKey(wantLabels) || l.Tenant != "caami" || l.ID != logs.DeriveID(&l) || l.SchemaVersion != logs.SchemaVersion {
		t.Errorf("line %+v: want labels %v, tenant caami and its derived id", l, wantLabels)
	}
	if ps := logs.Validate(&l, 0, t0, logs.DefaultLimits()); len(ps) > 0 {
		t.Errorf("the collector would refuse the line: %v", ps)
	}
	if n := r.count(tc, outcomeRead); n != 4 {
		t.Errorf("read = %v, want 4", n)
	}
}

func TestLinesTheEngineSendsAgainAcrossARotationAreTakenOnce(t *testing.T) {
	r := newRig(t, DefaultConfig())
	tc := r.tl.add(testContainer("web-1"), savedContainer{})
	lines := r.read(tc, false, out(0, "a"), out(1, "b"), out(2, "c"),
		out(1, "b"), out(2, "c"), out(3, "d"), // sent again from an older line
		out(3, "d"), out(3, "e"), // the last line again, then a second line of the same time
		piece(4, "p1"), out(2, "c"), out(3, "d"), out(3, "e"), // back while a long line was held
		piece(4, "p1"), out(4, "p2"), out(5, "f"))
	want := []got{{"stdout", "a", 0, 0}, {"stdout", "b", 1, 0}, {"stdout", "c", 2, 0}, {"stdout", "d", 3, 0}, {"stdout", "e", 3, 1},
		{"stdout", "p1p2", 4, 0}, {"stdout", "f", 5, 0}}
	if g := summary(lines); !same(g, want) {
		t.Fatalf("got %v, want %v", g, want)
	}
}

func TestAStreamReadAgainFromItsCheckpointSkipsExactlyTheLinesTaken(t *testing.T) {
	r := newRig(t, DefaultConfig())
	tc := r.tl.add(testContainer("web-1"), savedContainer{Streams: map[string]position{
		engine.Stdout: {Time: at(5), N: 2}, engine.Stderr: {Time: at(3), N: 1}}})
	lines := r.read(tc, false, errOut(3, "e0"), errOut(3, "e1"), out(4, "o"), out(5, "o0"), out(5, "o1"), out(5, "o2"), out(6, "o3"), errOut(4, "e2"))
	want := []got{{"stderr", "e1", 3, 1}, {"stdout", "o2", 5, 2}, {"stdout", "o3", 6, 0}, {"stderr", "e2", 4, 0}}
	if g := summary(lines); !same(g, want) {
		t.Fatalf("got %v, want %v", g, want)
	}
	if s := r.tl.since(tc); !s.Equal(at(4)) {
		t.Errorf("the next stream starts at %s, want the older position %s", s, at(4))
	}
}

func TestALineCutIntoPiecesByTheEngineArrivesWholeOrTruncatedWithItsMarker(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxLineBytes = 1024
	r := newRig(t, cfg)
	tc := r.tl.add(testContainer("web-1"), savedContainer{})
	long := strings.Repeat("x", 700)
	lines := r.read(tc, false, piece(0, "ab"), errOut(0, "between"), piece(0, "cd"), out(0, "ef"),
		piece(1, long), piece(1, long), out(1, long), out(2, "short"))
	if len(lines) != 4 || lines[0].Line != "between" || lines[1].Line != "abcdef" || lines[3].Line != "short" {
		t.Fatalf("got %v", summary(lines))
	}
	cut := lines[2].Line
	if len(cut) > 1024 || !strings.HasPrefix(cut, "xxx") || !strings.HasSuffix(cut, "]") {
		t.Errorf("a line of 2100 bytes became %d bytes ending %q; want at most 1024 with the marker", len(cut), cut[len(cut)-30:])
	}
	if want, _ := logs.Truncate(strings.Repeat("x", 2100), 1024); cut != want {
		t.Errorf("the truncated line is not logs.Truncate's")
	}
	if n := r.count(tc, outcomeTruncated); n != 1 {
		t.Errorf("truncated = %v, want 1", n)
	}
}

func TestTheLastLineOfARunWithoutALineEndIsShippedOnce(t *testing.T) {
	r := newRig(t, DefaultConfig())
	tc := r.tl.add(testContainer("web-1"), savedContainer{})
	// Held while the container runs: it may go on.
	if lines := r.read(tc, false, out(0, "a"), piece(1, "no end")); len(lines) != 1 {
		t.Fatalf("got %v, want only the complete line", summary(lines))
	}
	// Read again once it stopped: now it is a line, and the stream's end is
	// recorded for both streams.
	lines := r.read(tc, true, out(0, "a"), piece(1, "no end"))
	if want := []got{{"stdout", "no end", 1, 0}}; !same(summary(lines), want) {
		t.Fatalf("got %v, want %v", summary(lines), want)
	}
	// Its next run: a piece without line end followed by a line of another time.
	lines = r.read(tc, false, out(0, "a"), piece(1, "no end"), piece(2, "x"), out(3, "y"))
	if want := []got{{"stdout", "x", 2, 0}, {"stdout", "y", 3, 0}}; !same(summary(lines), want) {
		t.Fatalf("got %v, want %v", summary(lines), want)
	}
	if s := r.tl.since(tc); !s.Equal(at(1)) {
		t.Errorf("stderr, silent, starts at %s; want the end of the stopped run's stream %s", s, at(1))
	}
}

func TestInvalidUTF8BecomesReplacementCharacters(t *testing.T) {
	r := newRig(t, DefaultConfig())
	tc := r.tl.add(testContainer("web-1"), savedContainer{})
	lines := r.read(tc, false, out(0, "caf\xe9"))
	if len(lines) != 1 || lines[0].Line != "caf\uFFFD" {
		t.Fatalf("got %v", summary(lines))
	}
}

func TestANoisyContainerIsDroppedAtItsOwnLimitAndNotItsNeighbour(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ContainerRate = Rate{LinesPerSecond: 10, Burst: 3}
	cfg.TenantRate = Rate{LinesPerSecond: 10, Burst: 5}
	r := newRig(t, cfg)
	noisy := r.tl.add(testContainer("noisy"), savedContainer{})
	quiet := r.tl.add(testContainer("quiet"), savedContainer{})
	var msgs []engine.LogMessage
	for i := range 100 {
		msgs = append(msgs, out(0, fmt.Sprint("spam-", i)))
	}
	if n := len(r.read(noisy, false, msgs...)); n != 3 {
		t.Errorf("noisy shipped %d lines, want its burst of 3", n)
	}
	if n := len(r.read(quiet, false, out(0, "1"), out(0, "2"))); n != 2 {
		t.Errorf("quiet shipped %d lines, want both: the noisy one's excess must not use the institution's budget", n)
	}
	if n := r.count(noisy, outcomeRateLimited); n != 97 {
		t.Errorf("noisy rate_limited = %v, want 97", n)
	}
	// The institution's budget (5) is now spent: a third container is held by it.
	third := r.tl.add(testContainer("third"), savedContainer{})
	if n := len(r.read(third, false, out(0, "1"))); n != 0 || r.count(third, outcomeRateLimited) != 1 {
		t.Errorf("the institution's limit let a line through")
	}
	// A second later (by the lines' own times) the buckets refilled.
	if n := len(r.read(noisy, false, out(1000, "later"))); n != 1 {
		t.Errorf("noisy shipped %d lines a second later, want 1", n)
	}
}

func TestAcknowledgedLinesMoveTheCheckpointAndARemovedContainerIsForgottenOnceThrough(t *testing.T) {
	r := newRig(t, DefaultConfig())
	tc := r.tl.add(testContainer("web-1"), savedContainer{})
	lines := r.read(tc, false, out(0, "a"), out(0, "b"), out(1, "c"))
	entry := func(l logs.Line) spool.Entry {
		b, _ := json.Marshal(l)
		return spool.Entry{Kind: ship.KindLog, Data: b}
	}
	r.tl.Acked(ship.Ack{Kind: ship.KindLog, Delivered: []spool.Entry{entry(lines[0])}, Rejected: []spool.Entry{entry(lines[1])}})
	saved, err := r.tl.load()
	if err != nil {
		t.Fatal(err)
	}
	if p := saved[tc.c.ID].Streams[engine.Stdout]; p != (position{Time: at(0), N: 2}) {
		t.Errorf("checkpoint %+v, want after the second line at 0ms", p)
	}
	if r.count(tc, outcomeShipped) != 1 || r.count(tc, outcomeRejected) != 1 {
		t.Errorf("shipped %v, rejected %v; want 1 and 1", r.count(tc, outcomeShipped), r.count(tc, outcomeRejected))
	}
	r.tl.removed(tc)
	if saved, _ := r.tl.load(); len(saved) != 1 {
		t.Fatalf("removed with a line not acknowledged: the checkpoint must stay until it is")
	}
	r.tl.Acked(ship.Ack{Kind: ship.KindLog, Delivered: []spool.Entry{entry(lines[2])}})
	if saved, _ := r.tl.load(); len(saved) != 0 {
		t.Errorf("checkpoints %v remain after the removed container's last line was acknowledged", saved)
	}
}

func TestLinesDroppedAfterTheLastAcknowledgedOneAreNotReadAgainByTheNextAgent(t *testing.T) {
	s := stream{acked: position{Time: at(0), N: 1}, handed: position{Time: at(0), N: 1}, read: position{Time: at(5), N: 3}}
	if p := s.checkpoint(); p != s.read {
		t.Errorf("checkpoint %+v, want the read position %+v", p, s.read)
	}
	s.handed = position{Time: at(2), N: 1}
	if p := s.checkpoint(); p != s.acked {
		t.Errorf("checkpoint %+v with a line in flight, want the acknowledged position %+v", p, s.acked)
	}
}

func TestTheConfigurationNamesEachBadField(t *testing.T) {
	c := Config{MaxLineBytes: 10, ContainerRate: Rate{LinesPerSecond: 0, Burst: 1}, TenantRate: Rate{LinesPerSecond: 5, Burst: 0}}
	err := c.Validate()
	for _, want := range []string{"max_line_bytes: 10", "container_rate.lines_per_second", "tenant_rate.burst"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to name %s", err, want)
		}
	}
	if d := DefaultConfig(); d.Validate() != nil {
		t.Errorf("the defaults do not validate: %v", d.Validate())
	}
}

// noEngine is an engine the rig's readers never call.
type noEngine struct{ Engine }
