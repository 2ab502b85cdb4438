// Package cgroupstest reads what the kernel counts for a cgroup the plainest
// way, apart from runtime/cgroups' Reader: the ground truth that tests hold
// the agent's bills to.
package cgroupstest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// CPURoot returns the hierarchy that counts CPU time under the cgroup file
// system root: the unified one on cgroup v2, cpuacct's on v1. It fails the
// test where there is none.
func CPURoot(t testing.TB, root string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return root
	}
	for _, d := range []string{"cpuacct", "cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, d, "cpuacct.usage")); err == nil {
			return filepath.Join(root, d)
		}
	}
	t.Fatalf("no CPU accounting hierarchy under %s", root)
	return ""
}

// CPUNanos returns the CPU time the cgroup directory dir has counted, in
// nanoseconds: cgroup v1's cpuacct.usage, or v2's cpu.stat usage_usec.
func CPUNanos(dir string) (uint64, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			return us * 1000, err
		}
	}
	return 0, fmt.Errorf("%s: no usage_usec in cpu.stat", dir)
}
