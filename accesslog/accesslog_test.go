package accesslog_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/accesslog"
)

func readEntries(t *testing.T, path string) []accesslog.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []accesslog.Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e accesslog.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q is not an entry: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEntriesAreAppendedAsJSONLinesAcrossReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "access.jsonl")
	at := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	for i, actor := range []string{"ops-1", "ops-2"} {
		f, err := accesslog.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		e := accesslog.Entry{Time: at.Add(time.Duration(i) * time.Second), Actor: actor, Action: "GET /x", Tenant: "caami", Detail: `query={app="a"}`}
		if err := f.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got := readEntries(t, path)
	if len(got) != 2 || got[0].Actor != "ops-1" || got[1].Actor != "ops-2" || got[1].Detail != `query={app="a"}` || !got[1].Time.Equal(at.Add(time.Second)) {
		t.Errorf("entries = %+v", got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("audit file mode = %v, want 0600: entries name tenants and queries", perm)
	}
}

func TestConcurrentRecordsNeverInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.jsonl")
	f, err := accesslog.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := f.Record(context.Background(), accesslog.Entry{Actor: "ops", Action: "read", Tenant: "caami", Detail: string(rune('a' + i))}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := readEntries(t, path); len(got) != 20 {
		t.Errorf("%d entries, want 20", len(got))
	}
}

func TestRecordFailsOnceClosedOrCancelled(t *testing.T) {
	f, err := accesslog.OpenFile(filepath.Join(t.TempDir(), "access.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Record(ctx, accesslog.Entry{Actor: "ops"}); err == nil {
		t.Error("Record with a cancelled context succeeded")
	}
	f.Close()
	if err := f.Record(context.Background(), accesslog.Entry{Actor: "ops"}); err == nil {
		t.Error("Record on a closed file succeeded: a read would go unaudited")
	}
}
