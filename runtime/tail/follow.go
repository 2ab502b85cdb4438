package tail

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/runtime/engine"
)

// holdMax bounds the memory one line takes while its pieces arrive: the rest
// of a longer line is dropped as it comes, and only counted for its
// truncation marker.
const holdMax = 1 << 20

// retryDelay is the wait before a broken stream is opened again; reopenDelay
// the wait before the stream of a container that started again is opened,
// which also keeps an engine that ends streams early from being asked in a
// loop.
const (
	retryDelay  = time.Second
	reopenDelay = 100 * time.Millisecond
)

// followLoop reads one container's output for as long as it exists: one
// stream per run (the engine ends a stream when the container stops), then
// a wait for its next start or its removal.
func (t *Tailer) followLoop(ctx context.Context, tc *container) {
	for ctx.Err() == nil {
		r := &reader{ctx: ctx, t: t, tc: tc, open: map[string]*readStream{}}
		err := t.o.Engine.Logs(ctx, tc.c.ID, t.since(tc), true, r.message)
		if ctx.Err() != nil {
			return
		}
		c, ierr := t.o.Engine.Inspect(ctx, tc.c.ID)
		gone := cerrdefs.IsNotFound(ierr)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !gone:
			t.log.Warn("reading a container's logs failed; reading again", "container", tc.c.Name, "err", err)
			sleep(ctx, retryDelay)
			continue
		case ierr != nil && !gone:
			t.log.Warn("inspecting a container failed", "container", tc.c.Name, "err", ierr)
			sleep(ctx, retryDelay)
			continue
		case c.Running:
			// Started again while its last stream ended: nothing of the
			// new run may have been read yet.
			sleep(ctx, reopenDelay)
			continue
		}
		// Stopped or removed: the engine handed over every line of the run,
		// the last one even without its line end.
		if err := r.finish(); err != nil {
			return
		}
		if gone {
			t.removed(tc)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tc.wake:
		}
	}
}

// since is where a container's next stream starts: at the older of its two
// streams' positions (the engine filters by time only).
func (t *Tailer) since(tc *container) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, e := tc.streams[engine.Stdout].read.Time, tc.streams[engine.Stderr].read.Time
	if e.Before(o) {
		return e
	}
	return o
}

// reader is one stream of a container's messages from the engine.
type reader struct {
	ctx  context.Context
	t    *Tailer
	tc   *container
	open map[string]*readStream
	// latest is the newest time of any message read.
	latest time.Time
}

// readStream is what a reader knows of stdout or stderr.
type readStream struct {
	// at and count: the last count lines read had time at; last is the text
	// of the last of them.
	at    time.Time
	count int
	last  string
	// The pieces of a line not complete yet: its time and text.
	held   bool
	heldAt time.Time
	text   []byte
	// dropped counts the bytes of the held line beyond holdMax.
	dropped int
}

func (r *reader) stream(name string) *readStream {
	s, ok := r.open[name]
	if !ok {
		s = &readStream{}
		r.open[name] = s
	}
	return s
}

// message takes one message of the engine: a line or a piece of one.
func (r *reader) message(m engine.LogMessage) error {
	s := r.stream(m.Stream)
	if m.Time.After(r.latest) {
		r.latest = m.Time
	}
	// The pieces of a long line all carry its time. A newer message means
	// the held piece ended its run without a line end; an older one that the
	// engine went back, and sends the pieces again.
	if s.held {
		switch m.Time.Compare(s.heldAt) {
		case 1:
			if err := r.complete(m.Stream, s); err != nil {
				return err
			}
		case -1:
			s.held, s.text = false, s.text[:0]
		}
	}
	s.add(m)
	if m.Partial {
		return nil
	}
	return r.complete(m.Stream, s)
}

// add appends a piece to the held line, keeping at most holdMax bytes of it.
func (s *readStream) add(m engine.LogMessage) {
	s.held, s.heldAt = true, m.Time
	room := max(0, holdMax-len(s.text))
	s.text = append(s.text, m.Text[:min(room, len(m.Text))]...)
	s.dropped += max(0, len(m.Text)-room)
}

// finish completes the held lines once the engine has no more pieces to
// send (the container stopped), and records that both streams were read to
// the end: the next run's lines are all newer than the newest read.
func (r *reader) finish() error {
	for _, name := range []string{engine.Stdout, engine.Stderr} {
		if s := r.open[name]; s != nil && s.held {
			if err := r.complete(name, s); err != nil {
				return err
			}
		}
	}
	if r.latest.IsZero() {
		return nil
	}
	r.t.mu.Lock()
	for _, st := range r.tc.streams {
		st.read = maxPosition(st.read, position{Time: r.latest})
	}
	r.t.mu.Unlock()
	return nil
}

// complete takes the held line of a stream: it numbers it, skips it when the
// checkpoint covers it, applies the rate limits and the size limit, and hands
// it to the spool writer.
//
// Following a container across a rotation of its log file, the engine sends
// some lines again (Docker 20.10 does at most rotations), from an older line
// on: the checkpoint covers those. When it starts again at the last line, that
// line comes twice in a row with the same time and text.
func (r *reader) complete(name string, s *readStream) error {
	at, text, total := s.heldAt, string(s.text), len(s.text)+s.dropped
	s.held, s.text, s.dropped = false, s.text[:0], 0
	seq := 0
	switch {
	case at.Equal(s.at) && text == s.last:
		return nil
	case at.Equal(s.at):
		seq = s.count
		s.count++
	default:
		s.at, s.count = at, 1
	}
	s.last = text
	pos := position{Time: at, N: seq + 1}

	t, tc := r.t, r.tc
	t.mu.Lock()
	st := tc.streams[name]
	taken := !pos.after(st.read)
	t.mu.Unlock()
	if taken {
		return nil
	}
	tc.counts.read.Inc()
	if !tc.limiter.AllowN(at, 1) || !t.tenantLimiter(tc.c.Tenant).AllowN(at, 1) {
		tc.counts.rateLimited.Inc()
		t.mu.Lock()
		st.read = maxPosition(st.read, pos)
		t.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(r.line(name, at, seq, text, total))
	if err != nil {
		return err // plain data: cannot happen
	}
	select {
	case t.lines <- b:
	case <-r.ctx.Done():
		return errStopped
	}
	t.mu.Lock()
	st.read, st.handed = maxPosition(st.read, pos), maxPosition(st.handed, pos)
	t.mu.Unlock()
	return nil
}

// errStopped ends a stream when the tailer stops.
var errStopped = errors.New("tail: stopping")

// line builds the log line of a text, within the size limit and in valid
// UTF-8 (the collector refuses anything else).
func (r *reader) line(stream string, at time.Time, seq int, text string, total int) logs.Line {
	tc := r.tc
	valid := strings.ToValidUTF8(text, "\uFFFD")
	s, cut := logs.TruncateOf(valid, total+len(valid)-len(text), r.t.o.Config.MaxLineBytes)
	if cut {
		tc.counts.truncated.Inc()
	}
	labels := make(map[string]string, len(tc.labels)+1)
	for k, v := range tc.labels {
		labels[k] = v
	}
	labels[logs.LabelStream] = stream
	l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: tc.c.Tenant, Labels: labels, Time: at.UTC(), Seq: seq, Line: s}
	l.SetID()
	return l
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
