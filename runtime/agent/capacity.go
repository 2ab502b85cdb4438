package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/paasmeter/paasmeter/usage"
)

// Where ReadNodeCapacity looks by default.
const (
	CPUOnlinePath = "/sys/devices/system/cpu/online"
	MeminfoPath   = "/proc/meminfo"
)

// ReadNodeCapacity reads the node's capacity, which the collector holds its
// usage records to (usage.CheckBounds): the CPUs online, from sysfs (not
// this process's CPU affinity, which a cpuset may narrow below what the
// node's containers use), and the memory (MemTotal) of meminfo.
func ReadNodeCapacity(cpuOnlinePath, meminfoPath string) (usage.NodeCapacity, error) {
	var c usage.NodeCapacity
	online, err := os.ReadFile(cpuOnlinePath)
	if err != nil {
		return c, fmt.Errorf("agent: node CPUs: %w", err)
	}
	if c.CPUs, err = countCPUs(string(bytes.TrimSpace(online))); err != nil {
		return c, fmt.Errorf("agent: node CPUs: %s: %w", cpuOnlinePath, err)
	}
	meminfo, err := os.ReadFile(meminfoPath)
	if err != nil {
		return c, fmt.Errorf("agent: node memory: %w", err)
	}
	if c.MemoryBytes, err = memTotal(meminfo); err != nil {
		return c, fmt.Errorf("agent: node memory: %s: %w", meminfoPath, err)
	}
	return c, nil
}

// countCPUs counts the CPUs of a sysfs CPU list such as "0-3,8,10-11".
func countCPUs(list string) (int64, error) {
	var n int64
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("CPU list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 32); err != nil {
				return 0, fmt.Errorf("CPU list %q: %w", list, err)
			}
		}
		if a < 0 || b < a {
			return 0, fmt.Errorf("CPU list %q: bad range %q", list, part)
		}
		n += b - a + 1
	}
	return n, nil
}

// memTotal returns meminfo's MemTotal in bytes.
func memTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb <= 0 || kb > math.MaxInt64>>10 { // in bytes, it must fit an int64
				return 0, fmt.Errorf("MemTotal %q is not a size in kB", f[1])
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal line in kB")
}
