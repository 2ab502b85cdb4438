package agent

import (
	"strings"
	"testing"
)

// FuzzNodeCapacity feeds arbitrary text to the readers of the kernel's CPU
// list and meminfo, whose figures bound what the collector accepts from the
// node: neither panics, a CPU list read counts at least one CPU, and a
// MemTotal read is a positive whole number of kB.
func FuzzNodeCapacity(f *testing.F) {
	f.Add("0-3,8,10-11", "MemTotal:       65768292 kB\nMemFree:         1234 kB\n")
	f.Add("0", "MemFree: 1 kB\nMemTotal: 9007199254740992 kB\n") // 2^53 kB: 2^63 bytes overflowed to a negative size
	f.Add("3-1,a-b,0-", "MemTotal: -1 kB\n")
	f.Fuzz(func(t *testing.T, online, meminfo string) {
		if n, err := countCPUs(strings.TrimSpace(online)); err == nil && n < 1 {
			t.Fatalf("CPU list %q read as %d CPUs", online, n)
		}
		if b, err := memTotal([]byte(meminfo)); err == nil && (b <= 0 || b%1024 != 0) {
			t.Fatalf("meminfo %q read as MemTotal %d bytes", meminfo, b)
		}
	})
}
