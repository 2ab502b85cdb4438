package spool

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/testenv"
)

func TestNoSpaceLeft(t *testing.T) {
	t.Run("a disk out of space makes Append fail with ErrFull, and what it left is cut before the next Append", func(t *testing.T) {
		devFull, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			// Every Linux has /dev/full; only an odd sandbox lacks it.
			testenv.Missing(t, "no /dev/full:", err)
		}
		defer devFull.Close()
		dir := t.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, d := range []string{"a", "b"} {
			if _, err := s.Append("usage", []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		before := s.Stats()

		// The disk fills up: writes fail with ENOSPC, and so does undoing
		// them (/dev/full cannot be truncated), as can happen mid-crisis.
		real := s.f
		s.f = devFull
		_, err = s.Append("usage", []byte("c"))
		if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append on a full disk: %v, want ErrFull wrapping ENOSPC", err)
		}
		if st := s.Stats(); st != before {
			t.Fatalf("a failed Append changed the stats: %+v -> %+v", before, st)
		}
		// What a partial write may leave in the real file: whole, valid
		// frames of the failed Append, which the next Append overwrites only
		// in part.
		sg := s.segs[len(s.segs)-1]
		at := time.Now().UnixNano()
		left := appendFrame(appendFrame(nil, 3, at, "usage", []byte("c"), false), 4, at, "usage", []byte("c2"), true)
		if _, err := real.WriteAt(left, sg.size); err != nil {
			t.Fatal(err)
		}
		s.f = real
		seqs, err := s.Append("usage", []byte("d"))
		if err != nil || seqs[0] != 3 {
			t.Fatalf("Append once space is back = %v, %v; want Seq 3", seqs, err)
		}
		s.Close()
		s, err = Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		es, err := s.Peek(10, 1<<20)
		if err != nil || len(es) != 3 || string(es[2].Data) != "d" || s.Stats().TruncatedBytes != 0 {
			t.Fatalf("after reopen: %v, %v (stats %+v); want a, b, d and nothing cut", es, err, s.Stats())
		}
	})
}
