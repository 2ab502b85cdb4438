package spool_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/privfile/privfiletest"
	"github.com/paasmeter/paasmeter/runtime/spool"
)

func open(t testing.TB, dir string, o spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// segmented opens a spool of 100-byte segments, so that its entries spread
// over many, in a new directory dir, and appends entries n-0 to n-<count-1>;
// o opens it again.
func segmented(t testing.TB, count int) (dir string, o spool.Options, s *spool.Spool) {
	t.Helper()
	dir, o = t.TempDir(), spool.Options{SegmentBytes: 100}
	s = open(t, dir, o)
	appendN(t, s, 0, count)
	return dir, o, s
}

// appendN appends entries n-<from> to n-<from+count-1>, one per Append.
func appendN(t testing.TB, s *spool.Spool, from, count int) {
	t.Helper()
	for i := from; i < from+count; i++ {
		if _, err := s.Append("usage", fmt.Appendf(nil, "n-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func peekAll(t testing.TB, s *spool.Spool) []spool.Entry {
	t.Helper()
	es, err := s.Peek(1<<30, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// summary is "seq:data ..." of entries, for comparisons that print well.
func summary(es []spool.Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%d:%s ", e.Seq, e.Data)
	}
	return strings.TrimSpace(b.String())
}

// want is the summary of entries n-<from>.. with Seqs from seq on.
func want(seq, from, count int) string {
	var b strings.Builder
	for i := range count {
		fmt.Fprintf(&b, "%d:n-%d ", seq+i, from+i)
	}
	return strings.TrimSpace(b.String())
}

func segments(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// dirSizes maps each file of dir to its size.
func dirSizes(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		m[de.Name()] = fi.Size()
	}
	return m
}

// clock ticks one second per call, from a fixed start.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func TestAppendPeekAck(t *testing.T) {
	t.Run("entries come out in Seq order and stay until they are acknowledged", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{})
		appendN(t, s, 0, 3)
		seqs, err := s.Append("event", []byte("n-3"), []byte("n-4"), []byte("n-5"))
		if err != nil || !slices.Equal(seqs, []uint64{4, 5, 6}) {
			t.Fatalf("Append of a batch = %v, %v; want Seqs 4 5 6", seqs, err)
		}
		for range 2 {
			es, err := s.Peek(4, 1<<20)
			if err != nil || summary(es) != want(1, 0, 4) {
				t.Fatalf("Peek(4) = %q, %v; want %q", summary(es), err, want(1, 0, 4))
			}
		}
		if err := s.AckThrough(4); err != nil {
			t.Fatal(err)
		}
		rest := peekAll(t, s)
		if summary(rest) != want(5, 4, 2) || rest[0].Kind != "event" {
			t.Fatalf("after AckThrough(4): %q (kind %q), want %q of kind event", summary(rest), rest[0].Kind, want(5, 4, 2))
		}
	})
	t.Run("the entries of one Append share their AppendedAt and each Append takes the clock's time", func(t *testing.T) {
		c := newClock()
		s := open(t, t.TempDir(), spool.Options{Now: c.now})
		s.Append("usage", []byte("a"), []byte("b"))
		s.Append("usage", []byte("c"))
		es := peekAll(t, s)
		start := time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)
		if !es[0].AppendedAt.Equal(start.Add(time.Second)) || !es[1].AppendedAt.Equal(es[0].AppendedAt) || !es[2].AppendedAt.Equal(start.Add(2*time.Second)) {
			t.Fatalf("AppendedAt = %v %v %v", es[0].AppendedAt, es[1].AppendedAt, es[2].AppendedAt)
		}
	})
	t.Run("acknowledging again or less changes nothing", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{})
		appendN(t, s, 0, 5)
		for _, seq := range []uint64{3, 3, 1, 0} {
			if err := s.AckThrough(seq); err != nil {
				t.Fatalf("AckThrough(%d): %v", seq, err)
			}
		}
		if got := summary(peekAll(t, s)); got != want(4, 3, 2) {
			t.Fatalf("pending %q, want %q", got, want(4, 3, 2))
		}
	})
	t.Run("acknowledging an entry never appended is an error and acknowledges nothing", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{})
		appendN(t, s, 0, 2)
		if err := s.AckThrough(3); err == nil {
			t.Fatal("AckThrough(3) with 2 entries succeeded")
		}
		if st := s.Stats(); st.AckedThrough != 0 || st.Entries != 2 {
			t.Fatalf("stats after a refused ack: %+v", st)
		}
	})
	t.Run("Append refuses a bad kind or an oversized entry and writes nothing", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, spool.Options{MaxEntryBytes: 10})
		appendN(t, s, 0, 1)
		before := dirSizes(t, dir)
		for _, c := range []struct {
			kind string
			data [][]byte
		}{
			{"", [][]byte{[]byte("x")}},
			{strings.Repeat("k", 65), [][]byte{[]byte("x")}},
			{"usage", [][]byte{[]byte("fits"), []byte("eleven byte")}},
		} {
			if seqs, err := s.Append(c.kind, c.data...); err == nil {
				t.Errorf("Append(%q, %q) = %v, want an error", c.kind, c.data, seqs)
			}
		}
		if after := dirSizes(t, dir); !mapsEqual(before, after) {
			t.Fatalf("refused Appends changed the files: %v -> %v", before, after)
		}
		if seqs, err := s.Append("usage", []byte("ok")); err != nil || seqs[0] != 2 {
			t.Fatalf("Append after refusals = %v, %v; want Seq 2", seqs, err)
		}
	})
	t.Run("a closed spool answers ErrClosed", func(t *testing.T) {
		s, err := spool.Open(t.TempDir(), spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 0, 1)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, aerr := s.Append("usage", []byte("x"))
		_, perr := s.Peek(1, 1)
		for _, err := range []error{aerr, perr, s.AckThrough(1)} {
			if !errors.Is(err, spool.ErrClosed) {
				t.Errorf("after Close: %v, want ErrClosed", err)
			}
		}
	})
	t.Run("a second Open of an open directory is refused, and allowed after Close", func(t *testing.T) {
		dir := t.TempDir()
		s, err := spool.Open(dir, spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if s2, err := spool.Open(dir, spool.Options{}); err == nil {
			s2.Close()
			t.Fatal("a second Open of the same directory succeeded")
		}
		s.Close()
		open(t, dir, spool.Options{})
	})
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPeekLimits(t *testing.T) {
	// Five entries of 10 data bytes each.
	for _, c := range []struct {
		name                 string
		maxEntries, maxBytes int
		want                 int
	}{
		{"Peek stops at maxEntries", 3, 1 << 20, 3},
		{"Peek stops before the entry that would pass maxBytes", 100, 25, 2},
		{"Peek takes an entry that exactly fills maxBytes", 100, 30, 3},
		{"Peek returns one entry even when it alone is over maxBytes", 100, 1, 1},
		{"Peek returns everything when both limits are wide", 100, 1 << 20, 5},
		{"Peek returns nothing when asked for no entries", 0, 1 << 20, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, t.TempDir(), spool.Options{})
			for i := range 5 {
				s.Append("usage", fmt.Appendf(nil, "entry-%04d", i))
			}
			es, err := s.Peek(c.maxEntries, c.maxBytes)
			if err != nil || len(es) != c.want {
				t.Fatalf("Peek(%d, %d) = %d entries, %v; want %d", c.maxEntries, c.maxBytes, len(es), err, c.want)
			}
			for i, e := range es {
				if e.Seq != uint64(i+1) {
					t.Fatalf("entry %d has Seq %d", i, e.Seq)
				}
			}
		})
	}
	t.Run("Peek of an empty spool returns nothing", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{})
		if es, err := s.Peek(10, 10); err != nil || len(es) != 0 {
			t.Fatalf("Peek = %v, %v", es, err)
		}
	})
}

func TestReopen(t *testing.T) {
	t.Run("a reopened spool keeps its pending entries and acknowledgement and continues the numbering", func(t *testing.T) {
		dir, o, s := segmented(t, 10)
		s.AckThrough(3)
		s.Close()
		s = open(t, dir, o)
		if got := summary(peekAll(t, s)); got != want(4, 3, 7) {
			t.Fatalf("after reopen: %q, want %q", got, want(4, 3, 7))
		}
		if st := s.Stats(); st.AckedThrough != 3 || st.LastSeq != 10 || st.Entries != 7 || st.TruncatedBytes != 0 {
			t.Fatalf("stats after reopen: %+v", st)
		}
		if seqs, err := s.Append("usage", []byte("x")); err != nil || seqs[0] != 11 {
			t.Fatalf("Append after reopen = %v, %v; want Seq 11", seqs, err)
		}
	})
	t.Run("numbering continues after everything was acknowledged and every segment deleted", func(t *testing.T) {
		dir, o, s := segmented(t, 20)
		if err := s.AckThrough(20); err != nil {
			t.Fatal(err)
		}
		if segs := segments(t, dir); len(segs) != 0 {
			t.Fatalf("segments left after everything was acknowledged: %v", segs)
		}
		s.Close()
		for round := range 2 {
			s = open(t, dir, o)
			if st := s.Stats(); st.LastSeq != uint64(20+round) || st.Entries != uint64(round) {
				t.Fatalf("round %d: stats after reopen: %+v", round, st)
			}
			if seqs, err := s.Append("usage", []byte("x")); err != nil || seqs[0] != uint64(21+round) {
				t.Fatalf("round %d: Append = %v, %v; want Seq %d", round, seqs, err, 21+round)
			}
			s.Close()
		}
	})
	t.Run("a spool written by the version 1 format opens and new entries go to a version 2 segment", func(t *testing.T) {
		dir := t.TempDir()
		for _, name := range []string{"seg-00000000000000000001.log", "state.json"} {
			b, err := os.ReadFile(filepath.Join("testdata", "v1", name))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, name), b, 0o640)
		}
		s := open(t, dir, spool.Options{})
		es := peekAll(t, s)
		var got []string
		for _, e := range es {
			got = append(got, fmt.Sprintf("%d %s %s %s", e.Seq, e.Kind, e.AppendedAt.Format(time.RFC3339Nano), e.Data))
		}
		wantV1 := []string{
			`2 event 2026-01-02T03:04:07.000000006Z {"id":"v1-2"}`,
			`3 usage 2026-01-02T03:04:08.000000006Z {"id":"v1-3"}`,
			`4 usage 2026-01-02T03:04:08.000000006Z {"id":"v1-4"}`,
		}
		if !slices.Equal(got, wantV1) {
			t.Fatalf("entries of the version 1 spool:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantV1, "\n"))
		}
		if seqs, err := s.Append("usage", []byte("v2")); err != nil || seqs[0] != 5 {
			t.Fatalf("Append = %v, %v; want Seq 5", seqs, err)
		}
		segs := segments(t, dir)
		if len(segs) != 2 || filepath.Base(segs[1]) != "seg-00000000000000000005.log" {
			t.Fatalf("segments %v, want the version 1 one and seg-00000000000000000005.log", segs)
		}
		if b, _ := os.ReadFile(segs[1]); !bytes.HasPrefix(b, []byte("PMSPOOL2")) {
			t.Fatalf("the new segment starts with %q", b[:min(len(b), 8)])
		}
		s.AckThrough(4)
		if segs := segments(t, dir); len(segs) != 1 {
			t.Fatalf("the acknowledged version 1 segment is still there: %v", segs)
		}
	})
}

func TestSegments(t *testing.T) {
	t.Run("segments roll past SegmentBytes and go once all their entries are acknowledged", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, spool.Options{SegmentBytes: 150})
		appendN(t, s, 0, 30)
		segs := segments(t, dir)
		if len(segs) < 5 {
			t.Fatalf("30 entries of about 40 bytes made %d segments of at most 150 bytes", len(segs))
		}
		var firsts []uint64
		for _, p := range segs {
			var first uint64
			fmt.Sscanf(filepath.Base(p), "seg-%d.log", &first)
			firsts = append(firsts, first)
		}
		bytesBefore := s.Stats().Bytes
		// Acknowledging through the last entry of the third segment frees
		// exactly the first three.
		if err := s.AckThrough(firsts[3] - 1); err != nil {
			t.Fatal(err)
		}
		if left := segments(t, dir); !slices.Equal(left, segs[3:]) {
			t.Fatalf("after acknowledging three segments: %v, want %v", left, segs[3:])
		}
		// One more entry is not a whole segment.
		s.AckThrough(firsts[3])
		if left := segments(t, dir); !slices.Equal(left, segs[3:]) {
			t.Fatalf("a partly acknowledged segment was deleted: %v", left)
		}
		if st := s.Stats(); st.Bytes >= bytesBefore {
			t.Fatalf("Bytes %d after freeing segments, %d before", st.Bytes, bytesBefore)
		}
		if got := summary(peekAll(t, s)); got != want(int(firsts[3])+1, int(firsts[3]), 30-int(firsts[3])) {
			t.Fatalf("pending %q", got)
		}
	})
	t.Run("segments smaller than one entry still keep every entry of a batch", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{SegmentBytes: 4})
		appendN(t, s, 0, 1)
		s.AckThrough(1)
		s.Append("usage", []byte("n-1"), []byte("n-2"), []byte("n-3"))
		s.AckThrough(2)
		if got := summary(peekAll(t, s)); got != want(3, 2, 2) {
			t.Fatalf("pending %q, want %q", got, want(3, 2, 2))
		}
	})
}

// lastSegment returns the newest segment file and its contents.
func lastSegment(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	segs := segments(t, dir)
	b, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	return segs[len(segs)-1], b
}

func TestTornTail(t *testing.T) {
	// Each case damages the newest segment of a spool holding n-0 to n-4
	// (single Appends) and n-5 to n-7 (one Append), as a crash mid-write
	// would, and says which entries must survive.
	for _, c := range []struct {
		name     string
		damage   func(t *testing.T, dir string)
		survive  int
		cutBytes func(frame int) int64
	}{
		{"half a frame header at the end is cut off and every entry survives", func(t *testing.T, dir string) {
			p, b := lastSegment(t, dir)
			os.WriteFile(p, append(b, 0, 0, 0), 0o640)
		}, 8, func(int) int64 { return 3 }},
		{"a frame longer than what follows it is cut off and every entry survives", func(t *testing.T, dir string) {
			p, b := lastSegment(t, dir)
			os.WriteFile(p, append(b, 0, 0, 0, 40, 1, 2, 3, 4, 5, 6, 7), 0o640)
		}, 8, func(int) int64 { return 11 }},
		{"zeros at the end, as a file system may leave them, are cut off", func(t *testing.T, dir string) {
			p, b := lastSegment(t, dir)
			os.WriteFile(p, append(b, make([]byte, 100)...), 0o640)
		}, 8, func(int) int64 { return 100 }},
		{"flipped bytes in the last frame drop its whole Append and nothing before it", func(t *testing.T, dir string) {
			p, b := lastSegment(t, dir)
			b[len(b)-2] ^= 0xff
			os.WriteFile(p, b, 0o640)
		}, 5, func(frame int) int64 { return 3 * int64(frame) }},
		{"an Append whose last frames never reached the disk is dropped whole", func(t *testing.T, dir string) {
			p, b := lastSegment(t, dir)
			os.WriteFile(p, b[:len(b)-5], 0o640)
		}, 5, func(frame int) int64 { return 3*int64(frame) - 5 }},
		{"an Append cut exactly after a whole frame, without its end, is dropped whole", func(t *testing.T, dir string) {
			p, b := lastSegment(t, dir)
			frame := (len(b) - 8) / 8 // eight frames of equal size
			os.WriteFile(p, b[:len(b)-frame], 0o640)
		}, 5, func(frame int) int64 { return 2 * int64(frame) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := spool.Open(dir, spool.Options{})
			appendN(t, s, 0, 5)
			s.Append("usage", []byte("n-5"), []byte("n-6"), []byte("n-7"))
			s.Close()
			_, b := lastSegment(t, dir)
			frame := (len(b) - 8) / 8
			c.damage(t, dir)
			s = open(t, dir, spool.Options{})
			if got := summary(peekAll(t, s)); got != want(1, 0, c.survive) {
				t.Fatalf("after recovery: %q, want %q", got, want(1, 0, c.survive))
			}
			if st := s.Stats(); st.TruncatedBytes != c.cutBytes(frame) || st.LastSeq != uint64(c.survive) || st.Entries != uint64(c.survive) {
				t.Fatalf("stats after recovery: %+v, want TruncatedBytes %d", st, c.cutBytes(frame))
			}
			if seqs, err := s.Append("usage", fmt.Appendf(nil, "n-%d", c.survive)); err != nil || seqs[0] != uint64(c.survive+1) {
				t.Fatalf("Append after recovery = %v, %v; want Seq %d", seqs, err, c.survive+1)
			}
			s.Close()
			s = open(t, dir, spool.Options{})
			if got := summary(peekAll(t, s)); got != want(1, 0, c.survive+1) || s.Stats().TruncatedBytes != 0 {
				t.Fatalf("second reopen: %q (stats %+v), want %q and nothing cut", got, s.Stats(), want(1, 0, c.survive+1))
			}
		})
	}
	t.Run("a new segment whose header a crash cut short is started afresh", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := spool.Open(dir, spool.Options{})
		appendN(t, s, 0, 3)
		s.Close()
		os.WriteFile(filepath.Join(dir, "seg-00000000000000000004.log"), []byte("PMS"), 0o640)
		s = open(t, dir, spool.Options{})
		if got := summary(peekAll(t, s)); got != want(1, 0, 3) || s.Stats().TruncatedBytes != 3 {
			t.Fatalf("after recovery: %q, stats %+v", got, s.Stats())
		}
		if seqs, err := s.Append("usage", []byte("n-3")); err != nil || seqs[0] != 4 {
			t.Fatalf("Append = %v, %v; want Seq 4", seqs, err)
		}
	})
}

func TestCorruption(t *testing.T) {
	// Each case damages a spool of 30 single-entry Appends in segments of
	// about 3 entries (10 acknowledged), and Open must refuse it with an
	// error naming what is wrong and where.
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, dir string, segs []string) (mention []string)
	}{
		{"a flipped byte in an older segment", func(t *testing.T, dir string, segs []string) []string {
			b, _ := os.ReadFile(segs[len(segs)-3])
			b[20] ^= 1
			os.WriteFile(segs[len(segs)-3], b, 0o640)
			return []string{filepath.Base(segs[len(segs)-3]), "offset 8", "checksum"}
		}},
		{"a torn tail in an older segment", func(t *testing.T, dir string, segs []string) []string {
			b, _ := os.ReadFile(segs[len(segs)-2])
			os.WriteFile(segs[len(segs)-2], b[:len(b)-3], 0o640)
			return []string{filepath.Base(segs[len(segs)-2]), "offset"}
		}},
		{"an older segment that lost its header", func(t *testing.T, dir string, segs []string) []string {
			b, _ := os.ReadFile(segs[len(segs)-2])
			copy(b, "XXXXXXXX")
			os.WriteFile(segs[len(segs)-2], b, 0o640)
			return []string{filepath.Base(segs[len(segs)-2]), "offset 0", "not a spool segment header"}
		}},
		{"a flipped byte early in the newest segment, with later Appends after it", func(t *testing.T, dir string, segs []string) []string {
			p := segs[len(segs)-1]
			b, _ := os.ReadFile(p)
			b[20] ^= 1
			os.WriteFile(p, b, 0o640)
			return []string{filepath.Base(p), "offset 8", "not a torn write"}
		}},
		{"a newest segment that lost its header but still holds entries", func(t *testing.T, dir string, segs []string) []string {
			p := segs[len(segs)-1]
			b, _ := os.ReadFile(p)
			copy(b, "\x00\x00\x00\x00\x00\x00\x00\x00")
			os.WriteFile(p, b, 0o640)
			return []string{filepath.Base(p), "offset 0"}
		}},
		{"a segment of a newer format version", func(t *testing.T, dir string, segs []string) []string {
			p := segs[len(segs)-1]
			b, _ := os.ReadFile(p)
			b[7] = '9'
			os.WriteFile(p, b, 0o640)
			return []string{filepath.Base(p), "offset 7", "format version '9'"}
		}},
		{"a lost segment between two others", func(t *testing.T, dir string, segs []string) []string {
			os.Remove(segs[len(segs)-3])
			return []string{filepath.Base(segs[len(segs)-2]), "missing"}
		}},
		{"a lost first pending segment", func(t *testing.T, dir string, segs []string) []string {
			os.Remove(segs[0])
			return []string{filepath.Base(segs[1]), "entry 11 is the next one", "missing"}
		}},
		{"a lost newest segment the state file knows of", func(t *testing.T, dir string, segs []string) []string {
			os.Remove(segs[len(segs)-1])
			return []string{"30", "no segment holds them"}
		}},
		{"a corrupt state file", func(t *testing.T, dir string, segs []string) []string {
			os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"acked_through":1`), 0o640)
			return []string{"state.json"}
		}},
	} {
		t.Run(c.name+" is an error, never skipped", func(t *testing.T) {
			dir, o, s := segmented(t, 30)
			s.AckThrough(10)
			s.Close()
			mention := c.damage(t, dir, segments(t, dir))
			s2, err := spool.Open(dir, o)
			if err == nil {
				s2.Close()
				t.Fatal("Open succeeded")
			}
			msg := strings.ReplaceAll(err.Error(), dir, "") // the test's name is in dir
			for _, m := range mention {
				if !strings.Contains(msg, m) {
					t.Errorf("the error does not mention %q: %v", m, err)
				}
			}
		})
	}
	t.Run("corruption in a segment that holds only acknowledged entries does not matter", func(t *testing.T) {
		dir, o, s := segmented(t, 30)
		segs := segments(t, dir)
		s.AckThrough(10)
		s.Close()
		// Left behind, as a crash between the state file and the deletes would.
		os.WriteFile(segs[0], []byte("garbage"), 0o640)
		s = open(t, dir, o)
		if got := summary(peekAll(t, s)); got != want(11, 10, 20) {
			t.Fatalf("pending %q", got)
		}
		if _, err := os.Stat(segs[0]); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the acknowledged segment was not deleted: %v", err)
		}
	})
}

func TestFull(t *testing.T) {
	t.Run("a full spool refuses the whole Append, writes nothing, and takes Appends again after an ack", func(t *testing.T) {
		dir := t.TempDir()
		var hooks int
		o := spool.Options{MaxBytes: 2000, AfterAppend: func() { hooks++ }}
		s := open(t, dir, o)
		n := 0
		var err error
		for ; n < 1000; n++ {
			if _, err = s.Append("usage", fmt.Appendf(nil, "n-%d-%s", n, strings.Repeat("x", 40))); err != nil {
				break
			}
		}
		if !errors.Is(err, spool.ErrFull) || n < 10 {
			t.Fatalf("after %d appends: %v, want ErrFull", n, err)
		}
		files, stats := dirSizes(t, dir), s.Stats()
		if _, err := s.Append("usage", []byte("a"), []byte("b")); !errors.Is(err, spool.ErrFull) {
			t.Fatalf("a batch into a full spool: %v, want ErrFull", err)
		}
		if after := dirSizes(t, dir); !mapsEqual(files, after) || s.Stats() != stats || hooks != n {
			t.Fatalf("a refused Append changed something: files %v -> %v, stats %+v -> %+v, %d hooks for %d appends", files, after, stats, s.Stats(), hooks, n)
		}
		if err := s.AckThrough(uint64(n / 2)); err != nil {
			t.Fatal(err)
		}
		seqs, err := s.Append("usage", []byte("again"))
		if err != nil || seqs[0] != uint64(n+1) {
			t.Fatalf("Append after freeing space = %v, %v; want Seq %d", seqs, err, n+1)
		}
		s.Close()
		s = open(t, dir, o)
		if es := peekAll(t, s); len(es) != n-n/2+1 || string(es[len(es)-1].Data) != "again" {
			t.Fatalf("after reopen: %d entries ending %q", len(es), es[len(es)-1].Data)
		}
	})
	t.Run("an Append larger than the whole spool is ErrFull even when it is empty", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{MaxBytes: 100})
		if _, err := s.Append("usage", make([]byte, 100)); !errors.Is(err, spool.ErrFull) {
			t.Fatalf("Append = %v, want ErrFull", err)
		}
	})
}

func TestStats(t *testing.T) {
	t.Run("Stats counts pending entries and their segments, the oldest append and the watermarks", func(t *testing.T) {
		c := newClock()
		dir := t.TempDir()
		s := open(t, dir, spool.Options{Now: c.now, SegmentBytes: 100})
		if st := s.Stats(); st != (spool.Stats{}) {
			t.Fatalf("stats of a new spool: %+v", st)
		}
		appendN(t, s, 0, 6)
		es := peekAll(t, s)
		onDisk := int64(0)
		for _, p := range segments(t, dir) {
			fi, _ := os.Stat(p)
			onDisk += fi.Size()
		}
		if st := s.Stats(); st.Entries != 6 || st.LastSeq != 6 || st.AckedThrough != 0 || !st.OldestAppendedAt.Equal(es[0].AppendedAt) || st.Bytes != onDisk {
			t.Fatalf("stats: %+v, want 6 entries, oldest %v, %d bytes", st, es[0].AppendedAt, onDisk)
		}
		s.AckThrough(1)
		if st := s.Stats(); st.Entries != 5 || st.AckedThrough != 1 || !st.OldestAppendedAt.Equal(es[1].AppendedAt) {
			t.Fatalf("stats after AckThrough(1): %+v, want oldest %v", st, es[1].AppendedAt)
		}
		s.Close()
		s = open(t, dir, spool.Options{Now: c.now, SegmentBytes: 100})
		if st := s.Stats(); st.Entries != 5 || !st.OldestAppendedAt.Equal(es[1].AppendedAt) {
			t.Fatalf("stats after reopen: %+v", st)
		}
		s.AckThrough(6)
		if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 || !st.OldestAppendedAt.IsZero() || st.LastSeq != 6 {
			t.Fatalf("stats once everything is acknowledged: %+v", st)
		}
		s.Append("usage", []byte("late"))
		if st := s.Stats(); st.Entries != 1 || st.OldestAppendedAt.IsZero() {
			t.Fatalf("stats after an Append into an empty spool: %+v", st)
		}
	})
}

func TestAfterAppend(t *testing.T) {
	t.Run("AfterAppend runs once the entries are in the segment file, and may call the Spool", func(t *testing.T) {
		dir := t.TempDir()
		var s *spool.Spool
		var calls []string
		hook := func() {
			_, b := lastSegment(t, dir)
			st := s.Stats()
			want := fmt.Sprintf("entry-%d", st.LastSeq)
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("in AfterAppend, the newest segment does not hold %q", want)
			}
			calls = append(calls, want)
		}
		s = open(t, dir, spool.Options{AfterAppend: hook, SegmentBytes: 60})
		for i := 1; i <= 4; i++ {
			s.Append("usage", fmt.Appendf(nil, "entry-%d", i))
		}
		if !slices.Equal(calls, []string{"entry-1", "entry-2", "entry-3", "entry-4"}) {
			t.Fatalf("AfterAppend saw %v", calls)
		}
	})
}

func TestConcurrency(t *testing.T) {
	t.Run("eight appenders with a shipper acknowledging meanwhile lose nothing and duplicate nothing", func(t *testing.T) {
		const producers, each = 8, 500
		s := open(t, t.TempDir(), spool.Options{SegmentBytes: 4096})
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := 0; i < each; {
					n := min(1+i%3, each-i) // batches of 1 to 3
					batch := make([][]byte, n)
					for j := range batch {
						batch[j] = fmt.Appendf(nil, "%d/%d", p, i+j)
					}
					if _, err := s.Append("usage", batch...); err != nil {
						t.Error(err)
						return
					}
					i += n
				}
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()

		next := make([]int, producers) // the next i expected of each producer
		seq := uint64(1)
		ship := func() (int, error) {
			es, err := s.Peek(64, 1<<20)
			if err != nil {
				return 0, err
			}
			for _, e := range es {
				var p, i int
				fmt.Sscanf(string(e.Data), "%d/%d", &p, &i)
				if e.Seq != seq || i != next[p] {
					return 0, fmt.Errorf("entry %q has Seq %d, want Seq %d and %d/%d", e.Data, e.Seq, seq, p, next[p])
				}
				seq++
				next[p]++
			}
			if len(es) == 0 {
				return 0, nil
			}
			return len(es), s.AckThrough(es[len(es)-1].Seq)
		}
		var err error
		for running := true; running && err == nil; {
			select {
			case <-done:
				running = false
			default:
				var n int
				if n, err = ship(); n == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}
		for n := 1; n > 0 && err == nil; {
			n, err = ship()
		}
		<-done
		if err != nil {
			t.Fatal(err)
		}
		for p, n := range next {
			if n != each {
				t.Errorf("producer %d: %d entries shipped, want %d", p, n, each)
			}
		}
		if st := s.Stats(); st.Entries != 0 || st.LastSeq != producers*each {
			t.Fatalf("stats at the end: %+v", st)
		}
	})
}

// TestFilesArePrivate: the spool's directory, segments, state and lock are
// the agent user's alone, whatever the umask: entries hold tenants' usage and logs.
func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	privfiletest.WithoutUmask(t, func() {
		s := open(t, dir, spool.Options{})
		appendN(t, s, 0, 3)
		if err := s.AckThrough(2); err != nil {
			t.Fatal(err)
		}
	})
	seen := privfiletest.CheckTree(t, dir)
	if !seen["state.json"] || !seen["LOCK"] || len(seen) < 3 {
		t.Errorf("files of the spool: %v, want a segment, state.json and LOCK", seen)
	}
}
