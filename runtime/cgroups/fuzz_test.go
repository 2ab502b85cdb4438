package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The parsers read files the kernel writes, but a fixture, a future kernel or
// a file caught mid-removal can hold anything. Whatever the input, they must
// not panic, and a failure must be a *ParseError naming the file.

const fuzzFile = "/sys/fs/cgroup/x/file"

// seed adds as seeds the fixture files of these names and inputs.
func seed(f *testing.F, names []string, inputs ...string) {
	f.Helper()
	for _, name := range names {
		err := filepath.WalkDir("testdata", func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != name {
				return err
			}
			data, err := os.ReadFile(p)
			f.Add(data)
			return err
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range inputs {
		f.Add([]byte(s))
	}
}

// fuzzParse fuzzes parse, seeded as seed does, for the one property every
// parser has: whatever the input, no panic, and only a *ParseError naming
// the file.
func fuzzParse(f *testing.F, parse func(data []byte) error, names []string, inputs ...string) {
	seed(f, names, inputs...)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := parse(data); err != nil {
			checkParseError(t, data, err)
		}
	})
}

func checkParseError(t *testing.T, data []byte, err error) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != fuzzFile {
		t.Fatalf("error %v is not a *ParseError naming the file", err)
	}
	if pe.Line < 0 || pe.Line > bytes.Count(data, []byte{'\n'})+1 || len(pe.Text) > maxQuoted+3 {
		t.Fatalf("error %v points outside the input", err)
	}
}

func FuzzParseFlatKeyed(f *testing.F) {
	seed(f, []string{"cpu.stat", "memory.stat", "memory.events", "memory.oom_control"},
		"", "\n", "a 1", "a  1\n", "a\t1\n", " 1\n", "a -1\n", "a 18446744073709551616\n", "a 1\n\nb 2\n", "a 0x10\n", "a 1_000\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		var pairs bytes.Buffer
		err := parseFlatKeyed(fuzzFile, data, func(k []byte, v uint64) {
			fmt.Fprintf(&pairs, "%s %d\n", k, v)
		})
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		// What was accepted, written back in canonical form, reads the same.
		var again bytes.Buffer
		if err := parseFlatKeyed(fuzzFile, pairs.Bytes(), func(k []byte, v uint64) {
			fmt.Fprintf(&again, "%s %d\n", k, v)
		}); err != nil || !bytes.Equal(again.Bytes(), pairs.Bytes()) {
			t.Fatalf("canonical form %q reads as %q, %v", pairs.Bytes(), again.Bytes(), err)
		}
	})
}

func FuzzParseSingle(f *testing.F) {
	fuzzParse(f, func(data []byte) error { _, err := parseLimit(fuzzFile, data); return err },
		[]string{"cpuacct.usage", "memory.current", "memory.max", "pids.current", "memory.limit_in_bytes"},
		"", "max", "max\n", "1\n2\n", "+1\n", " 1\n", "18446744073709551615\n")
}

func FuzzParseIOStat(f *testing.F) {
	fuzzParse(f, func(data []byte) error { _, _, err := parseIOStat(fuzzFile, data); return err }, []string{"io.stat"},
		"", "8:0\n", "8:0 rbytes=1 wbytes=2\n8:16 rbytes=3\n", "8:0 rbytes=\n", "8:0 =1\n", "8 rbytes=1\n",
		"8:0 rbytes=18446744073709551615\n8:16 rbytes=1\n", "8:0 cost.vrate=100.00 rbytes=1\n", "8:0 rbytes=1 rbytes=2\n")
}

func FuzzParseBlkioServiceBytes(f *testing.F) {
	fuzzParse(f, func(data []byte) error { _, _, err := parseBlkioServiceBytes(fuzzFile, data); return err },
		[]string{"blkio.throttle.io_service_bytes"}, "", "Total 0\n", "Total\n", "8:0 Read\n", "8:0 Read 1 2\n", "8:0 Frob 1\n", ":0 Read 1\n")
}

func FuzzParseNetDev(f *testing.F) {
	fuzzParse(f, func(data []byte) error { _, _, err := parseNetDev(fuzzFile, data); return err }, []string{"dev"},
		"", netDevHeader, netDevHeader+"lo:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
		netDevHeader+": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", netDevHeader+"eth0:::\n")
}

func FuzzParseProcCgroup(f *testing.F) {
	seed(f, []string{"cgroup"}, "", "0::/\n", "0::\n", "1:cpu,cpuacct:/a:b\n", "::/\n", "1:cpuacct:relative\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseProcCgroup(fuzzFile, data)
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		if len(p) == 0 || p[0] != '/' {
			t.Fatalf("path %q is not absolute", p)
		}
	})
}

func FuzzParseProcs(f *testing.F) {
	seed(f, []string{"cgroup.procs"}, "", "1\n", "1\n22\n333\n", "0\n", "-1\n", "x\n", "1\n\n", "99999999999\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		pids, err := parseProcs(fuzzFile, data)
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		for _, p := range pids {
			if p <= 0 {
				t.Fatalf("pid %d", p)
			}
		}
	})
}

func FuzzParseProcStat(f *testing.F) {
	seed(f, []string{"stat"}, "", "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 33 1000 10\n",
		"42 (a) b) c) R 7 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n", "42 (x) S\n", "42 (x) S -1\n", "42 x S 1\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseProcStat(fuzzFile, data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != fuzzFile || len(pe.Text) > maxQuoted+3 {
				t.Fatalf("error %v is not a *ParseError naming the file", err)
			}
			return
		}
		if st.PPid < 0 {
			t.Fatalf("parent pid %d", st.PPid)
		}
	})
}
