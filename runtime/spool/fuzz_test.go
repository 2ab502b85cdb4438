package spool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/paasmeter/paasmeter/runtime/spool"
)

// FuzzOpenCorrupt writes arbitrary bytes as the only segment of a spool.
// Open must not panic; when it accepts the segment, the spool must be whole:
// Seqs from 1 without a gap, Stats that agree, Appends that continue the
// numbering, and a second Open that finds nothing left to repair.
func FuzzOpenCorrupt(f *testing.F) {
	dir := f.TempDir()
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		f.Fatal(err)
	}
	s.Append("usage", []byte(`{"id":1}`))
	s.Append("event", []byte(`{"id":2}`), []byte(`{"id":3}`))
	s.Close()
	v2, err := os.ReadFile(filepath.Join(dir, "seg-00000000000000000001.log"))
	if err != nil {
		f.Fatal(err)
	}
	v1, err := os.ReadFile(filepath.Join("testdata", "v1", "seg-00000000000000000001.log"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{v2, v2[:len(v2)-3], v1, v1[:40], []byte("PMSPOOL2"), []byte("PMS"), nil, []byte("garbage and more garbage")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "seg-00000000000000000001.log"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := spool.Open(dir, spool.Options{})
		if err != nil {
			return
		}
		defer s.Close()
		es, err := s.Peek(1<<20, 1<<30)
		if err != nil {
			t.Fatalf("an opened spool cannot be read: %v", err)
		}
		for i, e := range es {
			if e.Seq != uint64(i+1) {
				t.Fatalf("entry %d has Seq %d", i, e.Seq)
			}
		}
		if st := s.Stats(); st.Entries != uint64(len(es)) || st.LastSeq != uint64(len(es)) {
			t.Fatalf("stats %+v for %d entries", st, len(es))
		}
		seqs, err := s.Append("usage", []byte("ok"))
		if err != nil || seqs[0] != uint64(len(es)+1) {
			t.Fatalf("Append = %v, %v; want Seq %d", seqs, err, len(es)+1)
		}
		s.Close()
		s2, err := spool.Open(dir, spool.Options{})
		if err != nil {
			t.Fatalf("a second Open: %v", err)
		}
		defer s2.Close()
		es2, err := s2.Peek(1<<20, 1<<30)
		if err != nil || len(es2) != len(es)+1 || s2.Stats().TruncatedBytes != 0 {
			t.Fatalf("a second Open: %d entries, %v, stats %+v; want %d and nothing cut", len(es2), err, s2.Stats(), len(es)+1)
		}
		if got := fmt.Sprint(es2[:len(es)]); got != fmt.Sprint(es) {
			t.Fatalf("a second Open reads other entries:\n%s\nwant\n%v", got, es)
		}
	})
}
