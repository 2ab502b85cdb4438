package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/logs"
)

// TestBenchAbuseReportsBothPhasesAndEveryAgentBatchIsAccepted runs the abuse
// benchmark at tiny sizes in both modes, the collector a child process (the
// paasmeter binary built here) and in-process: correctness of the run and its
// report, not timing.
func TestBenchAbuseReportsBothPhasesAndEveryAgentBatchIsAccepted(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "paasmeter")
	if out, err := exec.Command("go", "build", "-o", bin, "../paasmeter").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/paasmeter: %v\n%s", err, out)
	}
	args := []string{"abuse", "--duration", "1s", "--agents", "2", "--batch", "10", "--interval", "50ms",
		"--seed-mb", "1", "--slow-pushes", "2", "--trickle", "1ms", "--flood-streams", "20", "--readers", "2"}
	for name, mode := range map[string]struct {
		args []string
		want string
	}{
		// The child is pinned as by default; the test process is not, so that
		// the package's other tests keep every CPU.
		"child":      {[]string{"--paasmeter", bin, "--driver-cpus", ""}, "collector: a child process 'paasmeter collector'"},
		"in-process": {[]string{"--in-process"}, "collector: in the driver's process"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := run(t, context.Background(), append(slices.Clone(args), mode.args...)...)
			if err != nil {
				t.Fatalf("bench abuse: %v\n%s", err, out)
			}
			if !strings.Contains(out, mode.want) {
				t.Errorf("report lacks %q:\n%s", mode.want, out)
			}
			checkAbuseReport(t, out)
		})
	}
}

// checkAbuseReport checks that a report has both phases, every agent batch
// accepted, the attack's answers, the peak RSS and the aims.
func checkAbuseReport(t *testing.T, out string) {
	t.Helper()
	var err error
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

func TestLokiJSONIsAValidPushOfOneLinePerStream(t *testing.T) {
	at := time.Unix(1700000000, 5)
	var push struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(lokiJSON("flood0-1-", 3, at), &push); err != nil {
		t.Fatal(err)
	}
	if len(push.Streams) != 3 {
		t.Fatalf("%d streams, want 3", len(push.Streams))
	}
	for i, st := range push.Streams {
		if st.Stream[logs.LabelContainer] != fmt.Sprintf("flood0-1-%d", i) || st.Stream[logs.LabelApp] != "flood" ||
			len(st.Values) != 1 || st.Values[0] != [2]string{"1700000000000000005", "flood line"} {
			t.Errorf("stream %d: %v %v", i, st.Stream, st.Values)
		}
	}
}
