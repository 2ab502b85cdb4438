package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The container every fixture tree describes (see testdata/README.md).
const (
	fixtureID = "7a77fbaa3f164174b14a6c54f835a7bd70403aa6949768af034224d18b0a7899"
	podSlice  = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1316edb4_de60_44aa_8ad3_4030c0c6e43a.slice"
)

// fixture is what every tree in testdata says about the container.
var fixture = Stats{
	CPUUsageNs:            3_712_345_000,
	CPUPeriods:            1520,
	CPUThrottledPeriods:   37,
	CPUThrottledNs:        412_345_000,
	MemoryUsageBytes:      60_817_408,
	MemoryWorkingSetBytes: 52_428_800,
	MemoryLimitBytes:      268_435_456,
	MemoryPeakBytes:       73_400_320,
	OOMKills:              1,
	Pids:                  12,
	BlkioReadBytes:        10_485_760,
	BlkioWriteBytes:       5_242_880,
}

// The fixture trees and the container's path in each.
var (
	v1Path = "docker/" + fixtureID
	layout = map[string]string{
		"v1":          v1Path,
		"v2-cgroupfs": "docker/" + fixtureID,
		"v2-systemd":  "system.slice/docker-" + fixtureID + ".scope",
		"v2-kubepods": podSlice + "/cri-containerd-" + fixtureID + ".scope",
		// The per-run parent the runtime starts the container under, as the
		// agent finds it after the exit: the container's own cgroup is gone,
		// the parent holds its final counters.
		"v2-paasmeter": "/paasmeter/" + fixtureRun,
	}
)

func testdata(tree string) string { return filepath.Join("testdata", tree) }

// copyTree copies a fixture tree so a test may change it. Symlinks stay
// symlinks: a v1 tree captured on a host with a combined cpu,cpuacct
// hierarchy has cpu and cpuacct links.
func copyTree(t testing.TB, tree string) string {
	t.Helper()
	src, dst := testdata(tree), t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, to)
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t testing.TB, name string) {
	t.Helper()
	if err := os.RemoveAll(name); err != nil {
		t.Fatal(err)
	}
}

// v1File and v2File name a file of the fixture container in a copied tree.
func v1File(root, controller, file string) string {
	return filepath.Join(root, controller, v1Path, file)
}

func v2File(root, file string) string {
	return filepath.Join(root, layout["v2-systemd"], file)
}

// combinedV1 turns a copy of the v1 tree into a host with one cpu,cpuacct
// hierarchy, with or without the cpu and cpuacct symlinks systemd adds.
func combinedV1(t testing.TB, symlinks bool) string {
	t.Helper()
	root := copyTree(t, "v1")
	files := map[string][]byte{}
	for _, f := range []string{v1File(root, "cpu", "cpu.stat"), v1File(root, "cpuacct", "cpuacct.usage")} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(f)] = data
	}
	remove(t, filepath.Join(root, "cpu"))
	remove(t, filepath.Join(root, "cpuacct"))
	for name, data := range files {
		writeFile(t, v1File(root, "cpu,cpuacct", name), string(data))
	}
	if symlinks {
		for _, l := range []string{"cpu", "cpuacct"} {
			if err := os.Symlink("cpu,cpuacct", filepath.Join(root, l)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func newReader(t testing.TB, root string) *Reader {
	t.Helper()
	r, err := NewReader(root)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEveryLayoutGivesTheSameFigures(t *testing.T) {
	tests := map[string]struct {
		root    func(t *testing.T) string
		path    string
		version Version
	}{
		"a v1 docker cgroupfs container gives the fixture's figures": {
			func(*testing.T) string { return testdata("v1") }, layout["v1"], V1},
		"a v2 docker cgroupfs container gives the same figures as the v1 one": {
			func(*testing.T) string { return testdata("v2-cgroupfs") }, layout["v2-cgroupfs"], V2},
		"a v2 systemd-scope container gives the same figures as the v1 one": {
			func(*testing.T) string { return testdata("v2-systemd") }, layout["v2-systemd"], V2},
		"a v2 kubepods cri-containerd container gives the same figures as the v1 one": {
			func(*testing.T) string { return testdata("v2-kubepods") }, layout["v2-kubepods"], V2},
		"a v1 container on a combined cpu,cpuacct hierarchy gives the same figures": {
			func(t *testing.T) string { return combinedV1(t, false) }, v1Path, V1},
		"a v1 container on cpu,cpuacct with cpu and cpuacct symlinks gives the same figures": {
			func(t *testing.T) string { return combinedV1(t, true) }, v1Path, V1},
		"a v2 per-run parent left after the exit gives the run's figures": {
			func(*testing.T) string { return testdata("v2-paasmeter") }, layout["v2-paasmeter"], V2},
		"a path with a leading slash, as /proc writes it, reads the same container": {
			func(*testing.T) string { return testdata("v2-systemd") }, "/" + layout["v2-systemd"], V2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := newReader(t, tc.root(t))
			if r.Version() != tc.version {
				t.Fatalf("version %v, want %v", r.Version(), tc.version)
			}
			got, err := r.Read(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != fixture {
				t.Errorf("got  %+v\nwant %+v", got, fixture)
			}
		})
	}
}

func TestNewReader(t *testing.T) {
	tests := map[string]struct {
		root    func(t *testing.T) string
		version Version // 0: an error
	}{
		"a root with cgroup.controllers is v2":    {func(*testing.T) string { return testdata("v2-cgroupfs") }, V2},
		"a root without cgroup.controllers is v1": {func(*testing.T) string { return testdata("v1") }, V1},
		"a hybrid root, whose unified hierarchy sits in unified/, is v1": {func(t *testing.T) string {
			root := copyTree(t, "v1")
			writeFile(t, filepath.Join(root, "unified", "cgroup.controllers"), "\n")
			return root
		}, V1},
		"a missing root is an error": {func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, 0},
		"a file as root is an error": {func(*testing.T) string { return testdata("proc/4343/cgroup") }, 0},
		"a v1 root without a memory hierarchy is an error": {func(t *testing.T) string {
			root := copyTree(t, "v1")
			remove(t, filepath.Join(root, "memory"))
			return root
		}, 0},
		"a v1 root without any cpuacct hierarchy is an error": {func(t *testing.T) string {
			root := copyTree(t, "v1")
			remove(t, filepath.Join(root, "cpuacct"))
			return root
		}, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := NewReader(tc.root(t))
			switch {
			case tc.version == 0 && err == nil:
				t.Fatalf("no error, version %v", r.Version())
			case tc.version != 0 && err != nil:
				t.Fatal(err)
			case tc.version != 0 && r.Version() != tc.version:
				t.Fatalf("version %v, want %v", r.Version(), tc.version)
			}
		})
	}
	if V1.String() != "v1" || V2.String() != "v2" || Version(7).String() != "Version(7)" {
		t.Errorf("Version strings: %s %s %s", V1, V2, Version(7))
	}
}

// TestReadVariants changes one thing in a copy of a fixture tree and checks
// the figures that change with it.
func TestReadVariants(t *testing.T) {
	tests := map[string]struct {
		tree   string
		change func(t *testing.T, root string)
		want   func(s *Stats)
	}{
		"the v1 no-limit sentinel of 4 KiB pages reads as unlimited": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
		}, func(s *Stats) { s.MemoryLimitBytes = 0 }},
		"the v1 no-limit sentinel of 64 KiB pages reads as unlimited": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.limit_in_bytes"), "9223372036854710272\n")
		}, func(s *Stats) { s.MemoryLimitBytes = 0 }},
		"a v1 limit of 1 TiB is a limit": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.limit_in_bytes"), "1099511627776\n")
		}, func(s *Stats) { s.MemoryLimitBytes = 1 << 40 }},
		`a v2 memory.max of "max" reads as unlimited`: {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "memory.max"), "max\n")
		}, func(s *Stats) { s.MemoryLimitBytes = 0 }},
		"a v2 kernel without memory.peak leaves the peak at 0": {"v2-systemd", func(t *testing.T, root string) {
			remove(t, v2File(root, "memory.peak"))
		}, func(s *Stats) { s.MemoryPeakBytes = 0 }},
		"a v1 kernel without the oom_kill line leaves OOM kills at 0": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\n")
		}, func(s *Stats) { s.OOMKills = 0 }},
		"a v2 kernel without oom_kill in memory.events leaves OOM kills at 0": {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "memory.events"), "low 0\nhigh 0\nmax 27\noom 1\n")
		}, func(s *Stats) { s.OOMKills = 0 }},
		"a v2 cgroup without the io controller leaves block I/O at 0": {"v2-systemd", func(t *testing.T, root string) {
			remove(t, v2File(root, "io.stat"))
		}, func(s *Stats) { s.BlkioReadBytes, s.BlkioWriteBytes = 0, 0 }},
		"a v2 cgroup that did no I/O yet has an empty io.stat and block I/O at 0": {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "io.stat"), "")
		}, func(s *Stats) { s.BlkioReadBytes, s.BlkioWriteBytes = 0, 0 }},
		"v2 io.stat with blkcg debug keys still gives the bytes": {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "io.stat"), "8:16 rbytes=2097152 wbytes=1048576 rios=64 wios=32 dbytes=0 dios=0 cost.vrate=100.00 cost.usage=12 use_delay=0 delay_nsec=0\n"+
				"8:0 rbytes=8388608 wbytes=4194304 rios=412 wios=198 dbytes=0 dios=0\n")
		}, func(*Stats) {}},
		"a v1 host without the blkio hierarchy leaves block I/O at 0": {"v1", func(t *testing.T, root string) {
			remove(t, filepath.Join(root, "blkio"))
		}, func(s *Stats) { s.BlkioReadBytes, s.BlkioWriteBytes = 0, 0 }},
		"a v1 cgroup that did no I/O yet has only the Total line and block I/O at 0": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "blkio", "blkio.throttle.io_service_bytes"), "Total 0\n")
		}, func(s *Stats) { s.BlkioReadBytes, s.BlkioWriteBytes = 0, 0 }},
		"a v2 cgroup without the pids controller leaves pids at 0": {"v2-systemd", func(t *testing.T, root string) {
			remove(t, v2File(root, "pids.current"))
		}, func(s *Stats) { s.Pids = 0 }},
		"a v1 host without the pids hierarchy leaves pids at 0": {"v1", func(t *testing.T, root string) {
			remove(t, filepath.Join(root, "pids"))
		}, func(s *Stats) { s.Pids = 0 }},
		"a v2 cgroup without the cpu controller has usage but no periods": {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "cpu.stat"), "usage_usec 3712345\nuser_usec 2901234\nsystem_usec 811111\n")
		}, func(s *Stats) { s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledNs = 0, 0, 0 }},
		"v1 total_inactive_file wins over the cgroup's own inactive_file": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.stat"), "inactive_file 4096\ntotal_inactive_file 8388608\n")
		}, func(*Stats) {}},
		"v1 memory.stat without total_ lines falls back to inactive_file": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.stat"), "cache 4096\ninactive_file 4096\n")
		}, func(s *Stats) { s.MemoryWorkingSetBytes = s.MemoryUsageBytes - 4096 }},
		"the v1 working set is floored at 0 when inactive_file exceeds usage": {"v1", func(t *testing.T, root string) {
			writeFile(t, v1File(root, "memory", "memory.usage_in_bytes"), "4096\n")
		}, func(s *Stats) { s.MemoryUsageBytes, s.MemoryWorkingSetBytes = 4096, 0 }},
		"the v2 working set is floored at 0 when inactive_file exceeds usage": {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "memory.current"), "8388609\n")
			writeFile(t, v2File(root, "memory.stat"), "inactive_file 8388610\n")
		}, func(s *Stats) { s.MemoryUsageBytes, s.MemoryWorkingSetBytes = 8388609, 0 }},
		"a file without its final newline still reads": {"v2-systemd", func(t *testing.T, root string) {
			writeFile(t, v2File(root, "memory.current"), "60817408")
		}, func(*Stats) {}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := copyTree(t, tc.tree)
			tc.change(t, root)
			want := fixture
			tc.want(&want)
			got, err := newReader(t, root).Read(layout[tc.tree])
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestReadMissingMandatoryFileIsNotFound(t *testing.T) {
	tests := map[string]struct {
		tree string
		file func(root string) string // removed, with everything below it
	}{
		"a v1 container without cpuacct.usage is gone":                   {"v1", func(r string) string { return v1File(r, "cpuacct", "cpuacct.usage") }},
		"a v1 container without cpu.stat is gone":                        {"v1", func(r string) string { return v1File(r, "cpu", "cpu.stat") }},
		"a v1 container without memory.usage_in_bytes is gone":           {"v1", func(r string) string { return v1File(r, "memory", "memory.usage_in_bytes") }},
		"a v1 container without memory.stat is gone":                     {"v1", func(r string) string { return v1File(r, "memory", "memory.stat") }},
		"a v1 container without memory.limit_in_bytes is gone":           {"v1", func(r string) string { return v1File(r, "memory", "memory.limit_in_bytes") }},
		"a v1 container without memory.max_usage_in_bytes is gone":       {"v1", func(r string) string { return v1File(r, "memory", "memory.max_usage_in_bytes") }},
		"a v1 container without memory.oom_control is gone":              {"v1", func(r string) string { return v1File(r, "memory", "memory.oom_control") }},
		"a v1 container removed from the memory hierarchy first is gone": {"v1", func(r string) string { return filepath.Join(r, "memory", v1Path) }},
		"a v1 container removed from the cpuacct hierarchy last is gone": {"v1", func(r string) string { return filepath.Join(r, "cpuacct", v1Path) }},
		"a v2 container without cpu.stat is gone":                        {"v2-systemd", func(r string) string { return v2File(r, "cpu.stat") }},
		"a v2 container without memory.current is gone":                  {"v2-systemd", func(r string) string { return v2File(r, "memory.current") }},
		"a v2 container without memory.stat is gone":                     {"v2-systemd", func(r string) string { return v2File(r, "memory.stat") }},
		"a v2 container without memory.max is gone":                      {"v2-systemd", func(r string) string { return v2File(r, "memory.max") }},
		"a v2 container without memory.events is gone":                   {"v2-systemd", func(r string) string { return v2File(r, "memory.events") }},
		"a removed v2 container is gone":                                 {"v2-systemd", func(r string) string { return filepath.Dir(v2File(r, "x")) }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := copyTree(t, tc.tree)
			file := tc.file(root)
			remove(t, file)
			_, err := newReader(t, root).Read(layout[tc.tree])
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("error %v, want one wrapping ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), filepath.Base(file)) {
				t.Errorf("error %q does not name %s", err, filepath.Base(file))
			}
		})
	}
}

func TestReadMalformedFileIsAParseErrorNamingFileAndLine(t *testing.T) {
	tests := map[string]struct {
		tree, file, content string // file is relative to the container's directory; v1 files start with their controller
		line                int
		is                  error // also wrapped, when not nil
	}{
		"a letter in v1 cpuacct.usage":                     {"v1", "cpuacct/cpuacct.usage", "3712345000x\n", 1, strconv.ErrSyntax},
		"a negative number in v1 memory.stat":              {"v1", "memory/memory.stat", "cache 1\nrss -5\n", 2, strconv.ErrSyntax},
		"a v1 memory.stat line without a value":            {"v1", "memory/memory.stat", "cache 1\nrss\n", 2, nil},
		"a v1 memory.stat line with two spaces":            {"v1", "memory/memory.stat", "cache  1\n", 1, nil},
		"a blank line in v1 cpu.stat":                      {"v1", "cpu/cpu.stat", "nr_periods 1\n\nnr_throttled 0\n", 2, nil},
		"a counter beyond 64 bits in v1 pids":              {"v1", "pids/pids.current", "18446744073709551616\n", 1, strconv.ErrRange},
		"a v1 blkio line without bytes":                    {"v1", "blkio/blkio.throttle.io_service_bytes", "8:0 Read 1\n8:0 Write\nTotal 1\n", 2, nil},
		"a v1 blkio line with a bad device":                {"v1", "blkio/blkio.throttle.io_service_bytes", "sda Read 1\n", 1, nil},
		"v1 blkio sums that overflow":                      {"v1", "blkio/blkio.throttle.io_service_bytes", "8:0 Read 18446744073709551615\n8:16 Read 1\n", 2, nil},
		"a decimal in v2 cpu.stat":                         {"v2-systemd", "cpu.stat", "usage_usec 1.5\n", 1, strconv.ErrSyntax},
		"a v2 memory.max that is neither max nor a number": {"v2-systemd", "memory.max", "maxx\n", 1, strconv.ErrSyntax},
		"two lines in v2 memory.current":                   {"v2-systemd", "memory.current", "1\n2\n", 2, nil},
		"an empty v2 memory.current":                       {"v2-systemd", "memory.current", "", 0, nil},
		"v2 memory.stat without inactive_file":             {"v2-systemd", "memory.stat", "anon 1\nfile 2\n", 0, nil},
		"v2 cpu.stat without usage_usec":                   {"v2-systemd", "cpu.stat", "nr_periods 1\n", 0, nil},
		"v2 cpu.stat usage that overflows in ns":           {"v2-systemd", "cpu.stat", "usage_usec 18446744073709552\n", 0, nil},
		"a v2 io.stat rbytes that is not a number":         {"v2-systemd", "io.stat", "8:0 rbytes=1\n8:16 rbytes=abc wbytes=2\n", 2, strconv.ErrSyntax},
		"a v2 io.stat field that is not key=value":         {"v2-systemd", "io.stat", "8:0 rbytes=1 wbytes\n", 1, nil},
		"a v2 memory.events line in another format":        {"v2-systemd", "memory.events", "oom_kill=1\n", 1, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := copyTree(t, tc.tree)
			file := v2File(root, tc.file)
			if tc.tree == "v1" {
				controller, base, _ := strings.Cut(tc.file, "/")
				file = v1File(root, controller, base)
			}
			writeFile(t, file, tc.content)
			_, err := newReader(t, root).Read(layout[tc.tree])
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a *ParseError", err)
			}
			if pe.File != file || pe.Line != tc.line {
				t.Errorf("error at %s line %d, want %s line %d", pe.File, pe.Line, file, tc.line)
			}
			if !strings.Contains(err.Error(), file) || (tc.line > 0 && !strings.Contains(err.Error(), "line "+strconv.Itoa(tc.line))) {
				t.Errorf("error %q does not name the file and line", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if errors.Is(err, ErrNotFound) {
				t.Errorf("a malformed file must not pass for a gone container: %v", err)
			}
		})
	}
}

func TestReadFailsOnAnUnreadableFile(t *testing.T) {
	tests := map[string]struct{ tree, file string }{
		"an optional file that cannot be read is an error, not a zero": {"v2-systemd", "io.stat"},
		"a mandatory file that cannot be read is an error":             {"v2-systemd", "memory.stat"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := copyTree(t, tc.tree)
			// A directory in place of the file: reading it fails with EISDIR,
			// even for root, which permissions would not stop.
			file := v2File(root, tc.file)
			remove(t, file)
			if err := os.Mkdir(file, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := newReader(t, root).Read(layout[tc.tree])
			if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), file) {
				t.Fatalf("error %v, want one naming %s that is not ErrNotFound", err, file)
			}
		})
	}
}

func TestReadRejectsPathsOutsideAContainer(t *testing.T) {
	r := newReader(t, testdata("v2-systemd"))
	for _, p := range []string{"", "/", "..", "../v1", "docker/../../v1", "/../x"} {
		if _, err := r.Read(p); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Read(%q) = %v, want an error about the path", p, err)
		}
	}
}

func TestOneReaderServesConcurrentReads(t *testing.T) {
	r := newReader(t, testdata("v1"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if got, err := r.Read(v1Path); err != nil || got != fixture {
					t.Errorf("Read = %+v, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkRead is the cost of one sample of one container, on fixture trees
// (on a real cgroupfs each file read is a little dearer: the kernel renders
// the file on every read).
func BenchmarkRead(b *testing.B) {
	for _, tree := range []string{"v1", "v2-systemd"} {
		b.Run(tree, func(b *testing.B) {
			r := newReader(b, testdata(tree))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Read(layout[tree]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
