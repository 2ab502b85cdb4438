package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// cgroupTree makes a cgroup root with (empty) cgroups at the given paths; a
// v2 root gets cgroup.controllers, a v1 root the mandatory hierarchies.
func cgroupTree(t *testing.T, v Version, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	hierarchies := []string{""}
	if v == V1 {
		hierarchies = []string{"cpu", "cpuacct", "memory"}
	} else {
		writeFile(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	}
	for _, h := range hierarchies {
		if err := os.MkdirAll(filepath.Join(root, h), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			writeFile(t, filepath.Join(root, h, p, "cgroup.procs"), "")
		}
	}
	return root
}

func TestFindContainer(t *testing.T) {
	const uid = "1316edb4-de60-44aa-8ad3-4030c0c6e43a"
	tests := map[string]struct {
		root   func(t *testing.T) string
		parent string
		want   string
	}{
		"a v1 docker cgroupfs container is at docker/<id>": {
			func(*testing.T) string { return testdata("v1") }, "", layout["v1"]},
		"a v1 docker systemd container is a scope in system.slice": {
			func(t *testing.T) string { return cgroupTree(t, V1, "system.slice/docker-"+fixtureID+".scope") }, "",
			"system.slice/docker-" + fixtureID + ".scope"},
		"a v1 container with a cgroupfs parent is below that parent": {
			func(t *testing.T) string { return cgroupTree(t, V1, "paasmeter-test/"+fixtureID) }, "/paasmeter-test",
			"paasmeter-test/" + fixtureID},
		"a v1 kubepods cgroupfs container is found below its pod": {
			func(t *testing.T) string { return cgroupTree(t, V1, "kubepods/besteffort/pod"+uid+"/"+fixtureID) }, "",
			"kubepods/besteffort/pod" + uid + "/" + fixtureID},
		"a v2 docker cgroupfs container is at docker/<id>": {
			func(*testing.T) string { return testdata("v2-cgroupfs") }, "", layout["v2-cgroupfs"]},
		"a v2 docker systemd container is a scope in system.slice": {
			func(*testing.T) string { return testdata("v2-systemd") }, "", layout["v2-systemd"]},
		"a v2 kubepods cri-containerd scope is found below its burstable pod slice": {
			func(*testing.T) string { return testdata("v2-kubepods") }, "", layout["v2-kubepods"]},
		"a v2 kubepods docker scope is found below its pod slice": {
			func(t *testing.T) string {
				return cgroupTree(t, V2, podSlice+"/docker-"+fixtureID+".scope")
			}, "", podSlice + "/docker-" + fixtureID + ".scope"},
		"a v2 guaranteed kubepods crio scope is found right below kubepods.slice's pod": {
			func(t *testing.T) string {
				return cgroupTree(t, V2, "kubepods.slice/kubepods-pod1316edb4_de60.slice/crio-"+fixtureID+".scope")
			}, "", "kubepods.slice/kubepods-pod1316edb4_de60.slice/crio-" + fixtureID + ".scope"},
		"a v2 kubepods cgroupfs container is found below its pod": {
			func(t *testing.T) string { return cgroupTree(t, V2, "kubepods/burstable/pod"+uid+"/"+fixtureID) }, "",
			"kubepods/burstable/pod" + uid + "/" + fixtureID},
		"a container's own sub-cgroups do not make it ambiguous": {
			func(t *testing.T) string {
				c := "kubepods/burstable/pod" + uid + "/" + fixtureID
				return cgroupTree(t, V2, c, c+"/"+fixtureID)
			}, "", "kubepods/burstable/pod" + uid + "/" + fixtureID},
		"CRI-O's conmon scope next to the container is not taken for it": {
			func(t *testing.T) string {
				return cgroupTree(t, V2, podSlice+"/crio-conmon-"+fixtureID+".scope", podSlice+"/crio-"+fixtureID+".scope")
			}, "", podSlice + "/crio-" + fixtureID + ".scope"},
		"a v2 container with a systemd slice parent is a scope below the expanded slice": {
			func(t *testing.T) string {
				return cgroupTree(t, V2, "paasmeter.slice/paasmeter-tenants.slice/docker-"+fixtureID+".scope")
			}, "paasmeter-tenants.slice", "paasmeter.slice/paasmeter-tenants.slice/docker-" + fixtureID + ".scope"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := newReader(t, tc.root(t)).FindContainer(fixtureID, tc.parent)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFindContainerFailures(t *testing.T) {
	const other = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := map[string]struct {
		root     func(t *testing.T) string
		id       string
		parent   string
		notFound bool     // the error wraps ErrNotFound
		mentions []string // and names these
	}{
		"an unknown container on v1 is not found, listing the layouts tried": {
			func(*testing.T) string { return testdata("v1") }, other, "", true,
			[]string{"docker/" + other, "system.slice/docker-" + other + ".scope", "kubepods.slice/", "kubepods/"}},
		"an unknown container on v2 is not found, listing the layouts tried": {
			func(*testing.T) string { return testdata("v2-kubepods") }, other, "", true,
			[]string{"docker/" + other, "system.slice/docker-" + other + ".scope", "kubepods.slice/", "kubepods/"}},
		"a container below another parent is not found at the default one": {
			func(*testing.T) string { return testdata("v2-cgroupfs") }, fixtureID, "/paasmeter", true,
			[]string{"paasmeter/" + fixtureID}},
		"a kubepods container deeper than a pod is not found": {
			func(t *testing.T) string {
				return cgroupTree(t, V2, "kubepods/burstable/pod1/x/"+fixtureID)
			}, fixtureID, "", true, nil},
		"an empty id is refused rather than matching every cgroup": {
			func(*testing.T) string { return testdata("v2-kubepods") }, "", "", false, nil},
		"an id with a slash is refused": {
			func(*testing.T) string { return testdata("v2-kubepods") }, "../v1", "", false, nil},
		"a short id is not found, rather than matching a pod slice": {
			func(*testing.T) string { return testdata("v2-kubepods") }, "c", "", true, nil},
		"an id found in two pods is ambiguous": {
			func(t *testing.T) string {
				return cgroupTree(t, V2, "kubepods/burstable/pod1/"+fixtureID, "kubepods/besteffort/pod2/"+fixtureID)
			}, fixtureID, "", false, []string{"ambiguous"}},
		"a parent outside the root is refused": {
			func(*testing.T) string { return testdata("v2-cgroupfs") }, fixtureID, "../x", false, nil},
		"a malformed slice parent is refused": {
			func(*testing.T) string { return testdata("v2-cgroupfs") }, fixtureID, "a--b.slice", false, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := newReader(t, tc.root(t)).FindContainer(tc.id, tc.parent)
			if err == nil {
				t.Fatalf("found %s, want an error", got)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("error %v: wraps ErrNotFound = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %s", err, m)
				}
			}
		})
	}
}

func TestExpandSlice(t *testing.T) {
	tests := map[string]struct{ slice, want string }{
		"the root slice is the root":     {"-.slice", ""},
		"a top-level slice is one level": {"system.slice", "system.slice"},
		"each dash opens a level":        {"kubepods-burstable-pod1.slice", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"},
		"a double dash is invalid":       {"a--b.slice", ""},
		"a leading dash is invalid":      {"-a.slice", ""},
		"a trailing dash is invalid":     {"a-.slice", ""},
		"a bare .slice is invalid":       {".slice", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := expandSlice(tc.slice)
			valid := !strings.Contains(name, "invalid")
			if (err == nil) != valid || got != tc.want {
				t.Errorf("expandSlice(%q) = %q, %v", tc.slice, got, err)
			}
		})
	}
}

func TestPathFromProc(t *testing.T) {
	tests := map[string]struct {
		pid      int
		cgroup   string // when set, a /proc/<pid>/cgroup written for the test
		want     string // "" means an error
		notFound bool
	}{
		"a v1 container's path is that of its cpuacct line": {pid: 4242, want: layout["v1"]},
		"a v2 container's path is that of its 0:: line":     {pid: 4343, want: layout["v2-systemd"]},
		"a combined cpu,cpuacct line counts as the cpuacct line": {pid: 1,
			cgroup: "4:memory:/docker/a\n3:cpu,cpuacct:/docker/a\n0::/\n", want: "docker/a"},
		"on a hybrid host the cpuacct line wins over the 0:: line": {pid: 1,
			cgroup: "0::/system.slice/containerd.service\n2:cpuacct:/docker/a\n", want: "docker/a"},
		"a path with a colon is kept whole":                          {pid: 1, cgroup: "0::/kubepods/pod1/a:b\n", want: "kubepods/pod1/a:b"},
		"a process in the root cgroup is an error":                   {pid: 1, cgroup: "0::/\n"},
		"a process outside the agent's cgroup namespace is an error": {pid: 1, cgroup: "0::/../../docker/a\n"},
		"a file with neither cpuacct nor 0:: is an error":            {pid: 1, cgroup: "4:memory:/docker/a\n"},
		"a malformed line is an error":                               {pid: 1, cgroup: "0:/docker/a\n"},
		"a line with a non-numeric hierarchy id is an error":         {pid: 1, cgroup: "x::/docker/a\n"},
		"a process that is gone is not found":                        {pid: 999999, notFound: true},
		"a negative pid is an error":                                 {pid: -1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			proc := testdata("proc")
			if tc.cgroup != "" {
				proc = t.TempDir()
				writeFile(t, filepath.Join(proc, "1", "cgroup"), tc.cgroup)
			}
			got, err := PathFromProc(proc, tc.pid)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("error %v: wraps ErrNotFound = %v, want %v", err, !tc.notFound, tc.notFound)
			}
		})
	}
}

func TestPathFromProcThenReadGivesTheFixture(t *testing.T) {
	for pid, tree := range map[int]string{4242: "v1", 4343: "v2-systemd"} {
		p, err := PathFromProc(testdata("proc"), pid)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := newReader(t, testdata(tree)).Read(p); err != nil || got != fixture {
			t.Errorf("pid %d in %s: %+v, %v", pid, tree, got, err)
		}
	}
}

const netDevHeader = "Inter-|   Receive                                                |  Transmit\n" +
	" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"

func TestReadNetDev(t *testing.T) {
	tests := map[string]struct {
		pid    int
		netDev string // when set, a /proc/<pid>/net/dev written for the test
		rx, tx uint64
		fails  bool
	}{
		"the fixture container's traffic is eth0's, without lo's": {pid: 4242, rx: 18734532, tx: 1048576},
		"traffic is summed over every interface but lo": {pid: 1, netDev: netDevHeader +
			"    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n" +
			"  eth0:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0\n" +
			"  eth1:      30       1    0    0    0     0          0         0       40       1    0    0    0     0       0          0\n",
			rx: 1030, tx: 2040},
		"a long name and a wide counter without a space still parse": {pid: 1, netDev: netDevHeader +
			"docker0:12345678901 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n", rx: 12345678901, tx: 5},
		"a namespace with only lo has no traffic": {pid: 1, netDev: netDevHeader +
			"    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n"},
		"a line with 15 counters is an error": {pid: 1, netDev: netDevHeader +
			"  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n", fails: true},
		"a line without a colon is an error": {pid: 1, netDev: netDevHeader +
			"  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", fails: true},
		"a counter that is not a number is an error": {pid: 1, netDev: netDevHeader +
			"  eth0: 1 2 3 4 5 6 7 8 -9 10 11 12 13 14 15 16\n", fails: true},
		"a file without headers is an error":    {pid: 1, netDev: "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", fails: true},
		"an empty file is an error":             {pid: 1, netDev: "", fails: true},
		"a process without net/dev is gone":     {pid: 4343, fails: true},
		"a process that does not exist is gone": {pid: 999999, fails: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			proc := testdata("proc")
			if tc.pid == 1 {
				proc = t.TempDir()
				writeFile(t, filepath.Join(proc, "1", "net", "dev"), tc.netDev)
			}
			rx, tx, err := ReadNetDev(proc, tc.pid)
			if tc.fails {
				var pe *ParseError
				if err == nil || (!errors.As(err, &pe) && !errors.Is(err, ErrNotFound)) {
					t.Fatalf("got %d, %d, %v; want a *ParseError or ErrNotFound", rx, tx, err)
				}
				return
			}
			if err != nil || rx != tc.rx || tx != tc.tx {
				t.Errorf("got %d, %d, %v; want %d, %d", rx, tx, err, tc.rx, tc.tx)
			}
		})
	}
}

func TestProcsAndProcStat(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(v.String(), func(t *testing.T) {
			root := cgroupTree(t, v, "kubepods/pod1/c1", "kubepods/pod1/c2")
			dir := root
			if v == V1 {
				dir = filepath.Join(root, "cpuacct")
			}
			// v2 writes 0 for a process outside the reader's PID namespace.
			writeFile(t, filepath.Join(dir, "kubepods/pod1/c1/cgroup.procs"), "4242\n4250\n0\n")
			r, err := NewReader(root)
			if err != nil {
				t.Fatal(err)
			}
			if pids, err := r.Procs("/kubepods/pod1/c1"); err != nil || !slices.Equal(pids, []int{4242, 4250}) {
				t.Errorf("procs %v, %v; want 4242 and 4250", pids, err)
			}
			if pids, err := r.Procs("/kubepods/pod1/c2"); err != nil || len(pids) > 0 {
				t.Errorf("procs of an empty cgroup: %v, %v", pids, err)
			}
			if _, err := r.Procs("/kubepods/pod1/gone"); !errors.Is(err, ErrNotFound) {
				t.Errorf("procs of a cgroup that is gone: %v", err)
			}
		})
	}
	proc := t.TempDir()
	writeFile(t, filepath.Join(proc, "4242", "stat"), "4242 (sh (x) y) S 4200 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 777 1000 10\n")
	writeFile(t, filepath.Join(proc, "7", "stat"), "7 (sh) S 1\n")
	if st, err := ReadProcStat(proc, 4242); err != nil || st != (ProcStat{PPid: 4200, Start: 777}) {
		t.Errorf("stat %+v, %v; want parent 4200, start 777 (a command with parentheses and spaces)", st, err)
	}
	var pe *ParseError
	if _, err := ReadProcStat(proc, 7); !errors.As(err, &pe) {
		t.Errorf("a stat cut short: %v", err)
	}
	if _, err := ReadProcStat(proc, 8); !errors.Is(err, ErrNotFound) {
		t.Errorf("a process that is gone: %v", err)
	}
}

// fixtureRun is the run of the per-run parent in testdata/v2-paasmeter.
const fixtureRun = "a1b2c3d4-18eed4c6a12e91b5"

func TestRunParentsListsTheParentOfTheV2FixtureTree(t *testing.T) {
	r, err := NewReader(testdata("v2-paasmeter"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.RunParents(); err != nil || len(got) != 1 || got[0] != "/paasmeter/"+fixtureRun {
		t.Errorf("run parents %v, %v; want /paasmeter/%s", got, err, fixtureRun)
	}
}

func TestRunParentsListsThePerRunParentsOnV1AndV2(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(v.String(), func(t *testing.T) {
			root := cgroupTree(t, v, "paasmeter/a1b2c3d4-000000000000002a", "paasmeter/a1b2c3d4-000000000000002a/"+fixtureID,
				"paasmeter/ffee0011-000000000000002b", "docker/"+fixtureID)
			r, err := NewReader(root)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.RunParents()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"/paasmeter/a1b2c3d4-000000000000002a", "/paasmeter/ffee0011-000000000000002b"}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("run parents %v, want %v", got, want)
			}
			if !r.Busy(want[0]) || r.Busy(want[1]) {
				t.Errorf("busy: %v and %v; want the parent holding the container busy, the empty one not", r.Busy(want[0]), r.Busy(want[1]))
			}
			if err := os.RemoveAll(filepath.Join(root, map[Version]string{V1: "cpuacct", V2: ""}[v], "paasmeter")); err != nil {
				t.Fatal(err)
			}
			if got, err := r.RunParents(); err != nil || len(got) != 0 {
				t.Errorf("without a paasmeter directory: %v, %v; want none and no error", got, err)
			}
		})
	}
}
