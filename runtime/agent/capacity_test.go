package agent_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/usage"
)

func TestReadNodeCapacity(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mem := write("meminfo", "MemTotal:       65768292 kB\nMemFree:         1234 kB\n")
	for list, want := range map[string]int64{"0\n": 1, "0-3\n": 4, "0-3,8,10-11\n": 7} {
		got, err := agent.ReadNodeCapacity(write("online", list), mem)
		if err != nil || got != (usage.NodeCapacity{CPUs: want, MemoryBytes: 65768292 << 10}) {
			t.Errorf("%q: %+v, %v; want %d CPUs and 65768292 kB", list, got, err, want)
		}
	}
	for _, bad := range []string{"", "3-1", "a-b", "0-"} {
		if _, err := agent.ReadNodeCapacity(write("online", bad), mem); err == nil {
			t.Errorf("CPU list %q accepted", bad)
		}
	}
	if _, err := agent.ReadNodeCapacity(write("online", "0-1"), write("meminfo2", "MemFree: 1 kB\n")); err == nil {
		t.Error("meminfo without MemTotal accepted")
	}
	// This machine's own files read.
	if c, err := agent.ReadNodeCapacity(agent.CPUOnlinePath, agent.MeminfoPath); err != nil || c.CPUs < 1 || c.MemoryBytes < 1<<20 {
		t.Errorf("this machine: %+v, %v", c, err)
	}
}
