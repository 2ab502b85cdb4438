package tail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/paasmeter/paasmeter/internal/atomicfile"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
)

// position is how far a stream was taken: every line before Time, and the
// first N lines at exactly Time.
type position struct {
	Time time.Time `json:"time"`
	N    int       `json:"n"`
}

// after reports whether p is past q.
func (p position) after(q position) bool {
	if c := p.Time.Compare(q.Time); c != 0 {
		return c > 0
	}
	return p.N > q.N
}

func maxPosition(p, q position) position {
	if q.after(p) {
		return q
	}
	return p
}

// stream is how far one stream of a container is read, handed to the spool
// and acknowledged by the collector: acked ≤ handed ≤ read.
type stream struct {
	read, handed, acked position
}

// checkpoint is where a new agent starts reading the stream: after the last
// line acknowledged, or, once every line handed to the spool is acknowledged,
// after the last line read (the ones after the last handed were dropped by a
// rate limit: reading them again would let a restart undo the drop).
func (s *stream) checkpoint() position {
	if s.handed.after(s.acked) {
		return s.acked
	}
	return maxPosition(s.acked, s.read)
}

// savedState is the checkpoint file.
type savedState struct {
	Containers map[string]savedContainer `json:"containers"`
}

// savedContainer is one container's checkpoints, by stream.
type savedContainer struct {
	Name    string              `json:"name"`
	Streams map[string]position `json:"streams"`
}

func (t *Tailer) load() (map[string]savedContainer, error) {
	b, err := os.ReadFile(t.o.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]savedContainer{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tail: read checkpoints: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("tail: checkpoint file %s is corrupt: %w", t.o.StatePath, err)
	}
	return st.Containers, nil
}

// save writes the checkpoints of the containers followed.
func (t *Tailer) save() {
	t.saveMu.Lock()
	defer t.saveMu.Unlock()
	t.mu.Lock()
	st := savedState{Containers: make(map[string]savedContainer, len(t.conts))}
	for id, tc := range t.conts {
		sc := savedContainer{Name: tc.c.Name, Streams: map[string]position{}}
		for name, s := range tc.streams {
			sc.Streams[name] = s.checkpoint()
		}
		st.Containers[id] = sc
	}
	t.mu.Unlock()
	b, err := json.Marshal(st)
	if err == nil {
		err = atomicfile.Write(t.o.StatePath, b)
	}
	if err != nil {
		// The previous checkpoints stay: a restart reads some lines again.
		t.log.Error("cannot save the log checkpoints", "err", err)
	}
}

// Acked advances the checkpoints past the lines the collector acknowledged
// or refused (ship.Options.OnAck), counts them, and forgets the removed
// containers whose last lines are through.
func (t *Tailer) Acked(a ship.Ack) {
	if a.Kind != ship.KindLog {
		return
	}
	changed := t.ack(a.Delivered, func(c counters) { c.shipped.Inc() })
	changed = t.ack(a.Rejected, func(c counters) { c.rejected.Inc() }) || changed
	t.mu.Lock()
	for _, tc := range t.conts {
		changed = t.forgetIfDone(tc) || changed
	}
	t.mu.Unlock()
	if changed {
		t.save()
	}
}

// ack advances the acknowledged positions past entries and counts them.
// Lines of containers no longer known (read by an earlier agent, gone since)
// change nothing.
func (t *Tailer) ack(entries []spool.Entry, count func(counters)) bool {
	lines := make([]logs.Line, 0, len(entries))
	for _, e := range entries {
		var l logs.Line
		if err := json.Unmarshal(e.Data, &l); err == nil {
			lines = append(lines, l)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := false
	for _, l := range lines {
		tc := t.byName[l.Labels[logs.LabelContainer]]
		if tc == nil || tc.c.Tenant != l.Tenant {
			continue
		}
		s := tc.streams[l.Labels[logs.LabelStream]]
		if s == nil {
			continue
		}
		count(tc.counts)
		if pos := (position{Time: l.Time, N: l.Seq + 1}); pos.after(s.acked) {
			s.acked = pos
			changed = true
		}
	}
	return changed
}

// removed marks a container as gone once every line of it was read; it is
// forgotten once those are acknowledged too.
func (t *Tailer) removed(tc *container) {
	t.mu.Lock()
	tc.gone = true
	t.forgetIfDone(tc)
	t.mu.Unlock()
	t.save()
}

// forgetIfDone forgets a removed container whose lines handed to the spool
// are all acknowledged; its metrics go a while later, so that the last
// scrape sees the final counts. The caller holds t.mu.
func (t *Tailer) forgetIfDone(tc *container) bool {
	if !tc.gone || t.conts[tc.c.ID] != tc {
		return false
	}
	for _, name := range []string{engine.Stdout, engine.Stderr} {
		if s := tc.streams[name]; s.handed.after(s.acked) {
			return false
		}
	}
	delete(t.conts, tc.c.ID)
	if t.byName[tc.c.Name] == tc {
		delete(t.byName, tc.c.Name)
	}
	time.AfterFunc(seriesGrace, func() { t.m.forget(tc) })
	return true
}
