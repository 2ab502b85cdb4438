package spool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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
	scratch := scratchDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, err := os.MkdirTemp(scratch, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
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

// scratchDir returns a directory for the spools of one fuzzing process, in
// memory when the system has a tmpfs at /dev/shm: every input's Appends are
// fsynced, and on a disk those fsyncs held the target to about 100 inputs a
// second, against 1,000 or more in memory. The spool's code is the same on
// either; its crash safety is tested on disk elsewhere.
func scratchDir(f *testing.F) string {
	var st syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &st) != nil || st.Type != tmpfsMagic {
		return f.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "paasmeter-spool-fuzz-")
	if err != nil {
		return f.TempDir()
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// tmpfsMagic is TMPFS_MAGIC, tmpfs's f_type in statfs(2).
const tmpfsMagic = 0x01021994
