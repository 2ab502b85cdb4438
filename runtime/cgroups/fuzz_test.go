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

// seed adds the fixture files of that name as seeds.
func seed(f *testing.F, name string) {
	f.Helper()
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
	for _, name := range []string{"cpu.stat", "memory.stat", "memory.events", "memory.oom_control"} {
		seed(f, name)
	}
	for _, s := range []string{"", "\n", "a 1", "a  1\n", "a\t1\n", " 1\n", "a -1\n", "a 18446744073709551616\n", "a 1\n\nb 2\n", "a 0x10\n", "a 1_000\n"} {
		f.Add([]byte(s))
	}
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
	for _, name := range []string{"cpuacct.usage", "memory.current", "memory.max", "pids.current", "memory.limit_in_bytes"} {
		seed(f, name)
	}
	for _, s := range []string{"", "max", "max\n", "1\n2\n", "+1\n", " 1\n", "18446744073709551615\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseLimit(fuzzFile, data); err != nil {
			checkParseError(t, data, err)
		}
	})
}

func FuzzParseIOStat(f *testing.F) {
	seed(f, "io.stat")
	for _, s := range []string{"", "8:0\n", "8:0 rbytes=1 wbytes=2\n8:16 rbytes=3\n", "8:0 rbytes=\n", "8:0 =1\n", "8 rbytes=1\n",
		"8:0 rbytes=18446744073709551615\n8:16 rbytes=1\n", "8:0 cost.vrate=100.00 rbytes=1\n", "8:0 rbytes=1 rbytes=2\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := parseIOStat(fuzzFile, data); err != nil {
			checkParseError(t, data, err)
		}
	})
}

func FuzzParseBlkioServiceBytes(f *testing.F) {
	seed(f, "blkio.throttle.io_service_bytes")
	for _, s := range []string{"", "Total 0\n", "Total\n", "8:0 Read\n", "8:0 Read 1 2\n", "8:0 Frob 1\n", ":0 Read 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := parseBlkioServiceBytes(fuzzFile, data); err != nil {
			checkParseError(t, data, err)
		}
	})
}

func FuzzParseNetDev(f *testing.F) {
	seed(f, "dev")
	for _, s := range []string{"", netDevHeader, netDevHeader + "lo:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
		netDevHeader + ": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", netDevHeader + "eth0:::\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := parseNetDev(fuzzFile, data); err != nil {
			checkParseError(t, data, err)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	seed(f, "cgroup")
	for _, s := range []string{"", "0::/\n", "0::\n", "1:cpu,cpuacct:/a:b\n", "::/\n", "1:cpuacct:relative\n"} {
		f.Add([]byte(s))
	}
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
