package spool_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/spool"
)

// The crash tests run this test binary again as a child (TestHelperProcess)
// that uses a spool and dies; the parent then opens what the child left.
const (
	helperModeEnv  = "SPOOL_HELPER_MODE"
	helperDirEnv   = "SPOOL_HELPER_DIR"
	helperBatchEnv = "SPOOL_HELPER_FIRST_BATCH"
)

// TestHelperProcess is the child of the crash tests, not a test of its own.
// Whatever it reports on stdout, it reports only after Append returned.
func TestHelperProcess(t *testing.T) {
	mode, dir := os.Getenv(helperModeEnv), os.Getenv(helperDirEnv)
	if mode == "" {
		return // run as a test of its own: there is nothing to do
	}
	die := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var o spool.Options
	switch mode {
	case "kill-in-hook":
		// SIGKILL itself once the 50th Append is durable, before it returns.
		n := 0
		o.AfterAppend = func() {
			if n++; n == 50 {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	case "file-size-limit":
		// Writes past 16 KiB fail part way, as a full disk fails them.
		lim := &syscall.Rlimit{Cur: 16 << 10, Max: 16 << 10}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, lim); err != nil {
			die(err)
		}
	}
	s, err := spool.Open(dir, o)
	if err != nil {
		die(err)
	}
	batch, _ := strconv.Atoi(os.Getenv(helperBatchEnv))
	for failures := 0; failures < 3; batch++ {
		// Batches of 1 to 7 entries of about 300 bytes, each naming its batch.
		n := 1 + batch%7
		data := make([][]byte, n)
		for j := range data {
			data[j] = fmt.Appendf(nil, "batch-%d-entry-%d-of-%d-%s", batch, j, n, strings.Repeat("x", 270))
		}
		seqs, err := s.Append("usage", data...)
		if err != nil {
			fmt.Println("failed", err)
			failures++
			continue
		}
		for j, seq := range seqs {
			fmt.Println(seq, string(data[j]))
		}
	}
	os.Exit(0)
}

// child runs TestHelperProcess in mode on dir, reads what it reports until it
// exits or until stop says so, then SIGKILLs it. It returns the entries the
// child reported appended, by Seq, and its "failed" lines.
func child(t *testing.T, mode, dir string, firstBatch int, stop func(reported int) bool) (map[uint64]string, []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDirEnv+"="+dir, helperBatchEnv+"="+strconv.Itoa(firstBatch))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that hangs must not hang the test.
	defer time.AfterFunc(time.Minute, func() { cmd.Process.Kill() }).Stop()
	reported := map[uint64]string{}
	var failed []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && !stop(len(reported)) {
		line := sc.Text()
		seq, data, _ := strings.Cut(line, " ")
		if n, err := strconv.ParseUint(seq, 10, 64); err == nil {
			reported[n] = data
			continue
		}
		if seq != "failed" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the child said %q (stderr: %s)", line, stderr.Bytes())
		}
		failed = append(failed, data)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	return reported, failed
}

// checkAfterCrash opens what a child left and checks that every entry it
// reported is there with its data, that Seqs run from 1 without a gap, and
// that every Append is there whole or not at all. It returns the entries and
// the stats right after Open.
func checkAfterCrash(t *testing.T, dir string, reported map[uint64]string) ([]spool.Entry, spool.Stats) {
	t.Helper()
	s := open(t, dir, spool.Options{})
	st := s.Stats()
	es := peekAll(t, s)
	byBatch := map[string][2]int{} // batch -> entries seen, entries it had
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has Seq %d", i, e.Seq)
		}
		var b, j, n int
		if _, err := fmt.Sscanf(string(e.Data), "batch-%d-entry-%d-of-%d-", &b, &j, &n); err != nil {
			t.Fatalf("entry %d holds %.40q", e.Seq, e.Data)
		}
		key := strconv.Itoa(b)
		c := byBatch[key]
		if c[0] != j {
			t.Fatalf("entry %d is entry %d of batch %d, after %d of its entries", e.Seq, j, b, c[0])
		}
		byBatch[key] = [2]int{c[0] + 1, n}
	}
	for b, c := range byBatch {
		if c[0] != c[1] {
			t.Errorf("batch %s is there in part: %d of its %d entries", b, c[0], c[1])
		}
	}
	for seq, data := range reported {
		if seq > uint64(len(es)) || string(es[seq-1].Data) != data {
			t.Fatalf("entry %d, reported appended by the child, is missing after the crash", seq)
		}
	}
	t.Logf("%d entries reported, %d in the spool, %d bytes of a torn tail cut off", len(reported), len(es), st.TruncatedBytes)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return es, st
}

func TestCrash(t *testing.T) {
	t.Run("entries whose Append returned survive a SIGKILL at any moment, twice over, and no Append is there in part", func(t *testing.T) {
		dir := t.TempDir()
		var all map[uint64]string
		for round, target := range []int{2000, 1000} {
			// The second child starts where the first left and is killed too.
			reported, failed := child(t, "append", dir, round*1_000_000, func(n int) bool { return n >= target })
			if len(reported) < target || len(failed) > 0 {
				t.Fatalf("round %d: the child reported %d entries and failures %q", round, len(reported), failed)
			}
			if all == nil {
				all = reported
			} else {
				for seq, data := range reported {
					if _, dup := all[seq]; dup {
						t.Fatalf("round %d: Seq %d was given out again", round, seq)
					}
					all[seq] = data
				}
			}
			checkAfterCrash(t, dir, all)
		}
	})
	t.Run("entries are durable when AfterAppend runs: a SIGKILL inside it loses nothing", func(t *testing.T) {
		dir := t.TempDir()
		reported, _ := child(t, "kill-in-hook", dir, 0, func(int) bool { return false })
		es, _ := checkAfterCrash(t, dir, reported)
		// Batches 0 to 49 hold 1+b%7 entries each, and the 50th was killed
		// after its Append wrote it but before it returned.
		wantEntries := 0
		for b := range 50 {
			wantEntries += 1 + b%7
		}
		if len(es) != wantEntries {
			t.Fatalf("%d entries after the kill in AfterAppend, want the %d of 50 Appends", len(es), wantEntries)
		}
		if len(reported) >= len(es) {
			t.Fatalf("the child reported %d entries: the last Append returned, so the kill came too late to test anything", len(reported))
		}
	})
	t.Run("an Append the disk refused part way leaves no entry behind, before or after a restart", func(t *testing.T) {
		dir := t.TempDir()
		reported, failed := child(t, "file-size-limit", dir, 0, func(int) bool { return false })
		if len(failed) != 3 || !strings.Contains(failed[0], "file too large") {
			t.Fatalf("the child's failures: %q", failed)
		}
		es, st := checkAfterCrash(t, dir, reported)
		if len(es) != len(reported) {
			t.Fatalf("%d entries in the spool, but only %d Appends returned them", len(es), len(reported))
		}
		if st.TruncatedBytes != 0 {
			t.Fatalf("the failed Appends left %d bytes for Open to cut", st.TruncatedBytes)
		}
		s := open(t, dir, spool.Options{})
		if seqs, err := s.Append("usage", []byte("after")); err != nil || seqs[0] != uint64(len(es)+1) {
			t.Fatalf("Append after the failures = %v, %v; want Seq %d", seqs, err, len(es)+1)
		}
	})
}
