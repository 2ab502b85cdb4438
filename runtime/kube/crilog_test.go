package kube

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/engine"
)

func TestParseCRILine(t *testing.T) {
	at := time.Date(2026, 12, 6, 23, 50, 38, 793059427, time.UTC)
	for _, tc := range []struct {
		in   string
		want CRILine
		bad  bool
	}{
		{in: "2026-12-06T23:50:38.793059427Z stdout F start ...", want: CRILine{Time: at, Stream: "stdout", Text: []byte("start ...")}},
		{in: "2026-12-06T23:50:38.793059427Z stderr P a piece ", want: CRILine{Time: at, Stream: "stderr", Partial: true, Text: []byte("a piece ")}},
		{in: "2026-12-06T23:50:38.793059427Z stdout F ", want: CRILine{Time: at, Stream: "stdout", Text: []byte{}}},
		{in: "2026-12-06T23:50:38.793059427Z stdout F", want: CRILine{Time: at, Stream: "stdout"}},
		{in: "2026-12-06T23:50:38.793059427Z stdout F:x text  with  spaces", want: CRILine{Time: at, Stream: "stdout", Text: []byte("text  with  spaces")}},
		{in: "2026-12-07T00:50:38.793059427+01:00 stdout F zoned", want: CRILine{Time: at, Stream: "stdout", Text: []byte("zoned")}},
		{in: "", bad: true},
		{in: "2026-12-06T23:50:38Z", bad: true},
		{in: "yesterday stdout F x", bad: true},
		{in: "2026-12-06T23:50:38Z stdin F x", bad: true},
		{in: "2026-12-06T23:50:38Z stdout X x", bad: true},
		{in: "2026-12-06T23:50:38Z stdout", bad: true},
	} {
		got, err := ParseCRILine([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: parsed as %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial || string(got.Text) != string(tc.want.Text) {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// msg is a message as a test compares it.
type msg struct {
	Stream  string
	Time    string
	Text    string
	Partial bool
}

func collect(into *[]msg) func(engine.LogMessage) error {
	return func(m engine.LogMessage) error {
		*into = append(*into, msg{m.Stream, m.Time.UTC().Format(time.RFC3339Nano), string(m.Text), m.Partial})
		return nil
	}
}

const fixtureLogs = "testdata/logs/pods"

func TestARunsLogIsReadAcrossItsRotatedFilesOldestFirstWithPiecesAtTheirLinesTime(t *testing.T) {
	file := LogFile(fixtureLogs, "caami-web-prod", "web-5d9c", "0f8e6a52-1111-4222-8333-944455556666", "web", 0)
	var got []msg
	r := newCRIReader(time.Time{}, collect(&got))
	if err := r.follow(context.Background(), file, false, nil); err != nil {
		t.Fatal(err)
	}
	want := []msg{
		// The oldest rotation, compressed.
		{"stdout", "2026-12-07T06:00:00.000000001Z", "first line", false},
		{"stdout", "2026-12-07T06:00:00.000000001Z", "same time, second line", false},
		{"stderr", "2026-12-07T06:00:01.5Z", "a warning", false},
		// The last rotation: the pieces of one line carry its first piece's
		// time, as Docker's do, and the tailer joins them; stderr's line in
		// between is its own.
		{"stdout", "2026-12-07T06:30:00Z", "a long line cut by the runtime, ", true},
		{"stderr", "2026-12-07T06:30:00.1Z", "between the pieces", false},
		{"stdout", "2026-12-07T06:30:00Z", "its middle, ", true},
		{"stdout", "2026-12-07T06:30:00Z", "and its end", false},
		{"stdout", "2026-12-07T06:30:01Z", "", false},
		// The file being written.
		{"stdout", "2026-12-07T07:00:00Z", "after the rotation", false},
		{"stderr", "2026-12-07T07:00:02Z", "last words", false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages:\n got %+v\nwant %+v", got, want)
	}
	if r.bad != 1 {
		t.Errorf("%d bad lines counted, want 1", r.bad)
	}

	// From a time on (the tailer's checkpoint): the older files' lines are skipped.
	got = nil
	r = newCRIReader(time.Date(2026, 12, 7, 6, 30, 0, 0, time.UTC), collect(&got))
	if err := r.follow(context.Background(), file, false, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[0].Text != "a long line cut by the runtime, " {
		t.Errorf("since 06:30: %+v", got)
	}
	// Each run has its own file.
	got = nil
	if err := newCRIReader(time.Time{}, collect(&got)).follow(context.Background(), filepath.Join(filepath.Dir(file), "1.log"), false, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Text != "the next run" {
		t.Errorf("run 1: %+v", got)
	}
}

// TestFollowingARunReadsWhatIsAppendedAndRotatedUntilItEnds writes a run's
// file while the reader follows it, rotates it the kubelet's way (rename,
// new file), and ends the run: every line comes once, in order.
func TestFollowingARunReadsWhatIsAppendedAndRotatedUntilItEnds(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "0.log")
	appendLines := func(name string, lines ...string) {
		t.Helper()
		f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if _, err := f.WriteString(l + "\n"); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	msgs := make(chan msg, 100)
	running := make(chan bool, 1)
	running <- true
	isRunning := func() bool { v := <-running; running <- v; return v }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		r := newCRIReader(time.Time{}, func(m engine.LogMessage) error {
			msgs <- msg{m.Stream, m.Time.UTC().Format(time.RFC3339Nano), string(m.Text), m.Partial}
			return nil
		})
		done <- r.follow(ctx, file, true, isRunning)
	}()
	next := func(want string) {
		t.Helper()
		select {
		case m := <-msgs:
			if m.Text != want {
				t.Fatalf("got %q, want %q", m.Text, want)
			}
		case <-ctx.Done():
			t.Fatalf("no line %q", want)
		}
	}
	appendLines(file, "2026-12-07T07:00:00Z stdout F one")
	next("one")
	// Half a line (being written) waits for its end.
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("2026-12-07T07:00:01Z stdout F tw"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	appendLines(file, "o")
	next("two")
	// Rotation: lines written to the old file just before its rename, then
	// to the new one.
	appendLines(file, "2026-12-07T07:00:02Z stdout F three")
	if err := os.Rename(file, file+".20261207-070002"); err != nil {
		t.Fatal(err)
	}
	appendLines(file, "2026-12-07T07:00:03Z stdout F four")
	next("three")
	next("four")
	// The run ends after its last line.
	appendLines(file, "2026-12-07T07:00:04Z stderr F five")
	<-running
	running <- false
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the reader did not return after the run ended")
	}
	next("five")
	if len(msgs) != 0 {
		t.Errorf("%d more messages", len(msgs))
	}
}
