package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestBenchAbuseReportsBothPhasesAndEveryAgentBatchIsAccepted runs the abuse
// benchmark at tiny sizes: correctness of the run and its report, not timing.
func TestBenchAbuseReportsBothPhasesAndEveryAgentBatchIsAccepted(t *testing.T) {
	out, err := run(t, context.Background(), "abuse", "--duration", "1s", "--agents", "2", "--batch", "10", "--interval", "50ms",
		"--seed-mb", "1", "--slow-pushes", "2", "--trickle", "1ms", "--flood-streams", "20", "--readers", "2")
	if err != nil {
		t.Fatalf("bench abuse: %v\n%s", err, out)
	}
	phases := map[string]bool{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) != 7 || (f[0] != "quiet" && f[0] != "attack") {
			continue
		}
		phases[f[0]] = true
		n := make([]int, 4)
		for i := range n {
			if n[i], err = strconv.Atoi(f[1+i]); err != nil {
				t.Fatalf("%s row: column %d: %v\n%s", f[0], i+1, err, out)
			}
		}
		if batches, ok, errs := n[0], n[1], n[2]; batches == 0 || ok != batches || errs != 0 {
			t.Errorf("%s: %d batches, %d accepted, %d errors; want all accepted\n%s", f[0], batches, ok, errs, out)
		}
	}
	if !phases["quiet"] || !phases["attack"] {
		t.Errorf("report lacks a phase row (have %v):\n%s", phases, out)
	}
	for _, want := range []string{"attack slow push:", "attack stream flood:", "attack large read:", "peak RSS: ",
		"aim agents' p99 under attack ≤ 2× quiet", "aim peak RSS < 512 MiB: "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
