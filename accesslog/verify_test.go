package accesslog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/accesslog"
)

// chained writes n entries to a new access log, reopening it halfway, and
// returns its path.
func chained(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.jsonl")
	at := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	for _, part := range []int{n / 2, n - n/2} {
		f, err := accesslog.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for range part {
			e := accesslog.Entry{Time: at, Actor: "ops", Action: "GET /x", Tenant: "caami", Client: "192.0.2.7:4711", Outcome: accesslog.Allowed, Status: 200, Prev: "ignored"}
			if err := f.Record(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// record opens the access log at path, records n entries by ops, and closes
// it again.
func record(t *testing.T, path string, n int) {
	t.Helper()
	a, err := accesslog.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := a.Record(context.Background(), accesslog.Entry{Actor: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

func verifyFile(t *testing.T, path string) (accesslog.Chain, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return accesslog.Verify(f)
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))
}

func TestAChainAcrossReopensVerifies(t *testing.T) {
	path := chained(t, 5)
	c, err := verifyFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	if c.Entries != 5 || c.Head != accesslog.Hash(bytes.TrimSuffix(ls[4], []byte("\n"))) {
		t.Errorf("Verify = %+v, want 5 entries and the last line's hash", c)
	}
	if !bytes.Contains(ls[0], []byte(`"prev":""`)) || !bytes.Contains(ls[1], []byte(`"client":"192.0.2.7:4711","outcome":"allowed","status":200`)) {
		t.Errorf("lines %s", ls[:2])
	}
}

func TestTamperingIsFoundAtTheFirstBrokenLine(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(ls [][]byte) [][]byte
		line int
		says string
	}{
		"a changed entry breaks the next line": {func(ls [][]byte) [][]byte {
			ls[1] = bytes.Replace(ls[1], []byte(`"tenant":"caami"`), []byte(`"tenant":"ona"`), 1)
			return ls
		}, 3, "the line before hashes to"},
		"a removed entry":       {func(ls [][]byte) [][]byte { return append(ls[:2:2], ls[3:]...) }, 3, "the line before hashes to"},
		"a removed first entry": {func(ls [][]byte) [][]byte { return ls[1:] }, 1, "the first line has no predecessor"},
		"an inserted entry": {func(ls [][]byte) [][]byte {
			return append(ls[:2:2], append([][]byte{[]byte(`{"actor":"x","prev":""}` + "\n")}, ls[2:]...)...)
		}, 3, "the line before hashes to"},
		"an entry without prev": {func(ls [][]byte) [][]byte {
			ls[3] = []byte(`{"actor":"x"}` + "\n")
			return ls
		}, 4, `has no "prev" after chained lines`},
		"a first entry stripped of its prev": {func(ls [][]byte) [][]byte {
			ls[0] = bytes.Replace(ls[0], []byte(`,"prev":""`), nil, 1)
			return ls
		}, 2, "the line before hashes to"},
		"a repeated prev": {func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`"prev":`), []byte(`"prev":"x","prev":`), 1)
			return ls
		}, 3, `repeats the key "prev"`},
		"a line that is not JSON": {func(ls [][]byte) [][]byte {
			ls[4] = []byte("hello\n")
			return ls
		}, 5, "not a JSON object"},
		"a last line cut short": {func(ls [][]byte) [][]byte {
			ls[4] = ls[4][:10]
			return ls
		}, 5, "no newline"},
	} {
		t.Run(name, func(t *testing.T) {
			path := chained(t, 5)
			if err := os.WriteFile(path, bytes.Join(c.edit(lines(t, path)), nil), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := verifyFile(t, path)
			var be *accesslog.BrokenError
			if !errors.As(err, &be) || be.Line != c.line || !strings.Contains(be.Reason, c.says) {
				t.Errorf("Verify = %v, want line %d saying %q", err, c.line, c.says)
			}
		})
	}
}

// TestEntriesOfOlderReleasesPrecedeTheChain: a file of a release before
// the chain keeps growing; its old lines are counted, not covered.
func TestEntriesOfOlderReleasesPrecedeTheChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	old := `{"time":"2026-11-15T12:00:00Z","actor":"ops","action":"GET /x","tenant":"caami"}` + "\n"
	if err := os.WriteFile(path, []byte(old+old), 0o600); err != nil {
		t.Fatal(err)
	}
	record(t, path, 2)
	if c, err := verifyFile(t, path); err != nil || c.Entries != 4 || c.Unchained != 2 {
		t.Errorf("Verify = %+v, %v; want 4 entries of which 2 unchained", c, err)
	}
}

// TestAnIncompleteLastLineIsCutOffOnOpen: a crash while Record wrote leaves
// part of a line no read was answered for; the chain goes on from the last
// whole line.
func TestAnIncompleteLastLineIsCutOffOnOpen(t *testing.T) {
	for _, torn := range []string{`{"time":"2026-11-15T12:00:00Z","act`, "\n{"} {
		path := chained(t, 3)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(strings.TrimPrefix(torn, "\n")); err != nil {
			t.Fatal(err)
		}
		f.Close()
		record(t, path, 1)
		if c, err := verifyFile(t, path); err != nil || c.Entries != 4 {
			t.Errorf("after a torn line %q: Verify = %+v, %v; want 4 entries", torn, c, err)
		}
	}
}

func TestAFileOfOneTornLineStartsAfresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.jsonl")
	if err := os.WriteFile(path, []byte(`{"act`), 0o600); err != nil {
		t.Fatal(err)
	}
	record(t, path, 1)
	if c, err := verifyFile(t, path); err != nil || c.Entries != 1 {
		t.Errorf("Verify = %+v, %v; want 1 entry", c, err)
	}
}

func TestLongLinesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.jsonl")
	a, err := accesslog.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("q", 200<<10) // longer than a read-back chunk
	for range 2 {
		if err := a.Record(context.Background(), accesslog.Entry{Actor: "ops", Detail: long}); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if a, err = accesslog.OpenFile(path); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	if c, err := verifyFile(t, path); err != nil || c.Entries != 2 {
		t.Errorf("Verify = %+v, %v; want 2 entries", c, err)
	}
}

// FuzzVerify feeds arbitrary files to Verify: it never panics, and what it
// accepts is whole lines, counted, whose last line's hash is the head.
func FuzzVerify(f *testing.F) {
	good, err := os.ReadFile(chained(f, 3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte("\n"))
	f.Add([]byte(`{"prev":""}` + "\n"))
	f.Add([]byte(`{"prev":"","prev":"x"}` + "\n"))
	f.Add([]byte(`{"prev":""} {}` + "\n"))
	f.Add([]byte(`{"prev":null}` + "\n"))
	f.Add(good[:len(good)-3])
	f.Add(bytes.Replace(good, []byte("caami"), []byte("ona"), 1))
	f.Fuzz(func(t *testing.T, file []byte) {
		c, err := accesslog.Verify(bytes.NewReader(file))
		var be *accesslog.BrokenError
		if err != nil {
			if !errors.As(err, &be) || be.Line < 1 || be.Line != c.Entries+1 || be.Reason == "" {
				t.Fatalf("Verify = %+v, %v: want a *BrokenError after the entries it counted", c, err)
			}
			return
		}
		ls := bytes.SplitAfter(file, []byte("\n"))
		if len(ls[len(ls)-1]) == 0 {
			ls = ls[:len(ls)-1]
		}
		if c.Entries != len(ls) {
			t.Fatalf("Verify counted %d entries in %d lines", c.Entries, len(ls))
		}
		prev := ""
		for _, l := range ls {
			prev = accesslog.Hash(bytes.TrimSuffix(l, []byte("\n")))
		}
		if c.Head != prev {
			t.Fatalf("head %s, want the last line's hash %s", c.Head, prev)
		}
	})
}
