package spool_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/paasmeter/paasmeter/runtime/spool"
)

func open(t *testing.T, dir string, o spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t *testing.T, s *spool.Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := s.Append("usage", []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

func peekAll(t *testing.T, s *spool.Spool) []spool.Entry {
	t.Helper()
	es, err := s.Peek(1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestSpool(t *testing.T) {
	t.Run("entries come out in order and leave only when acknowledged", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{})
		appendN(t, s, 0, 10)
		es, err := s.Peek(4, 1<<20)
		if err != nil || len(es) != 4 || es[0].Seq != 1 || string(es[3].Data) != `{"n":3}` {
			t.Fatalf("Peek = %v, %v", es, err)
		}
		if err := s.AckThrough(es[3].Seq); err != nil {
			t.Fatal(err)
		}
		rest := peekAll(t, s)
		if len(rest) != 6 || rest[0].Seq != 5 || s.Stats().Entries != 6 {
			t.Fatalf("after ack: %d entries from %d, stats %+v", len(rest), rest[0].Seq, s.Stats())
		}
	})
	t.Run("a reopened spool keeps pending entries and never reuses a sequence number", func(t *testing.T) {
		dir := t.TempDir()
		s, err := spool.Open(dir, spool.Options{SegmentBytes: 200})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 0, 20)
		s.AckThrough(20) // everything delivered: old segments go
		s.Close()
		s = open(t, dir, spool.Options{SegmentBytes: 200})
		seqs, err := s.Append("usage", []byte("x"))
		if err != nil || seqs[0] != 21 {
			t.Fatalf("Append after reopen = %v, %v; want seq 21", seqs, err)
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
		if len(segs) > 2 {
			t.Errorf("%d segments left after everything was acknowledged", len(segs))
		}
	})
	t.Run("a torn tail after a crash is cut off and the entries before it survive", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := spool.Open(dir, spool.Options{})
		appendN(t, s, 0, 5)
		s.Close()
		segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
		f, _ := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
		f.Write([]byte{0, 0, 0, 40, 1, 2, 3}) // half a frame
		f.Close()
		s = open(t, dir, spool.Options{})
		if es := peekAll(t, s); len(es) != 5 || s.Stats().TruncatedBytes != 7 {
			t.Fatalf("after a torn tail: %d entries, stats %+v", len(es), s.Stats())
		}
		if seqs, err := s.Append("usage", []byte("y")); err != nil || seqs[0] != 6 {
			t.Fatalf("append after recovery = %v, %v", seqs, err)
		}
	})
	t.Run("corruption in an older segment is an error, never skipped", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := spool.Open(dir, spool.Options{SegmentBytes: 100})
		appendN(t, s, 0, 10)
		s.Close()
		segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
		b, _ := os.ReadFile(segs[0])
		b[len(b)-2] ^= 0xff
		os.WriteFile(segs[0], b, 0o640)
		if _, err := spool.Open(dir, spool.Options{SegmentBytes: 100}); err == nil || !strings.Contains(err.Error(), filepath.Base(segs[0])) {
			t.Fatalf("Open = %v, want an error naming %s", err, filepath.Base(segs[0]))
		}
	})
	t.Run("a full spool refuses whole appends and takes them again after an ack", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{MaxBytes: 400, SegmentBytes: 150})
		var err error
		n := 0
		for ; n < 100; n++ {
			if _, err = s.Append("usage", []byte("0123456789012345678901234567890123456789")); err != nil {
				break
			}
		}
		if !errors.Is(err, spool.ErrFull) || n == 0 {
			t.Fatalf("after %d appends: %v, want ErrFull", n, err)
		}
		if got := uint64(len(peekAll(t, s))); got != uint64(n) {
			t.Fatalf("%d entries after a refused append, want %d", got, n)
		}
		if err := s.AckThrough(uint64(n)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append("usage", []byte("again")); err != nil {
			t.Fatalf("append after the ack: %v", err)
		}
	})
	t.Run("concurrent appenders lose and duplicate nothing", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{SegmentBytes: 4096})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 100 {
					if _, err := s.Append("usage", []byte(fmt.Sprintf("%d-%d", g, i))); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for i, e := range peekAll(t, s) {
			if e.Seq != uint64(i+1) || seen[string(e.Data)] {
				t.Fatalf("entry %d: seq %d, data %s (seen before: %v)", i, e.Seq, e.Data, seen[string(e.Data)])
			}
			seen[string(e.Data)] = true
		}
		if len(seen) != 800 {
			t.Fatalf("%d entries, want 800", len(seen))
		}
	})
	t.Run("Peek bounds a batch by bytes but returns at least one entry", func(t *testing.T) {
		s := open(t, t.TempDir(), spool.Options{})
		appendN(t, s, 0, 5)
		es, _ := s.Peek(100, 1)
		if len(es) != 1 {
			t.Fatalf("Peek with a 1-byte budget returned %d entries", len(es))
		}
	})
}

// TestAppendedEntriesSurviveSIGKILL runs a child that appends in a loop and
// reports each sequence number once Append returned; after a SIGKILL every
// reported entry is in the reopened spool.
func TestAppendedEntriesSurviveSIGKILL(t *testing.T) {
	if dir := os.Getenv("SPOOL_CHILD_DIR"); dir != "" {
		s, err := spool.Open(dir, spool.Options{SegmentBytes: 4096})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			seqs, err := s.Append("usage", []byte("entry-"+strconv.Itoa(i)))
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println(seqs[0], i)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAppendedEntriesSurviveSIGKILL$")
	cmd.Env = append(os.Environ(), "SPOOL_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reported := map[uint64]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(reported) < 1000 {
		var seq uint64
		var i int
		if _, err := fmt.Sscan(sc.Text(), &seq, &i); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		reported[seq] = "entry-" + strconv.Itoa(i)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	s := open(t, dir, spool.Options{SegmentBytes: 4096})
	got := map[uint64]string{}
	for _, e := range peekAll(t, s) {
		got[e.Seq] = string(e.Data)
	}
	for seq, data := range reported {
		if got[seq] != data {
			t.Fatalf("entry %d (%s) acknowledged by Append is missing after SIGKILL (have %q)", seq, data, got[seq])
		}
	}
	if len(reported) < 1000 {
		t.Fatalf("the child reported only %d entries", len(reported))
	}
}

// FuzzOpenCorrupt: whatever bytes a segment holds, Open does not panic; it
// either refuses or gives a spool that works.
func FuzzOpenCorrupt(f *testing.F) {
	f.Add([]byte("PMSPOOL1"))
	f.Add([]byte("PMSPOOL1\x00\x00\x00\x11\x00\x00\x00\x00"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "seg-00000000000000000001.log"), data, 0o640)
		s, err := spool.Open(dir, spool.Options{})
		if err != nil {
			return
		}
		defer s.Close()
		if _, err := s.Append("usage", []byte("ok")); err != nil {
			t.Fatalf("a recovered spool refuses appends: %v", err)
		}
		if _, err := s.Peek(10, 1<<20); err != nil {
			t.Fatalf("a recovered spool cannot be read: %v", err)
		}
	})
}

// BenchmarkAppend measures durable appends of 300-byte entries, one and a
// hundred per call (each call is one fsync).
func BenchmarkAppend(b *testing.B) {
	entry := []byte(strings.Repeat("x", 300))
	for _, per := range []int{1, 100} {
		b.Run(fmt.Sprintf("per-call=%d", per), func(b *testing.B) {
			s, err := spool.Open(b.TempDir(), spool.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([][]byte, per)
			for i := range data {
				data[i] = entry
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.Append("usage", data...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
