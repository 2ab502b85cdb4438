package embedded_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/embedded"
)

// childEnv, when set, makes the test binary an issuing process (see
// TestMain) on the data directory it names, instead of running tests.
const childEnv = "PAASMETER_STATE_TEST_CHILD_DIR"

const (
	processSeries   = "PM-2026"
	issuesPerWorker = 10
	workers         = 3
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := issueMany(context.Background(), dir, "child-"+strconv.Itoa(os.Getpid())); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// issueMany issues workers × issuesPerWorker invoices of tenant into the
// store in dir, from concurrent goroutines.
func issueMany(ctx context.Context, dir, tenant string) error {
	s, err := embedded.Open(ctx, dir)
	if err != nil {
		return err
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range issuesPerWorker {
				if _, err := s.Issue(ctx, processSeries, func(seq int64) (state.Document, error) {
					return invoice(tenant, seq), nil
				}, state.AuditEntry{Actor: tenant, Action: "invoice.issue"}); err != nil {
					errs <- fmt.Errorf("%s: %w", tenant, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func invoice(tenant string, seq int64) state.Document {
	number := fmt.Sprintf("%s-%06d", processSeries, seq)
	body := fmt.Appendf(nil, `{"number":%q,"tenant":%q}`, number, tenant)
	sum := sha256.Sum256(body)
	return state.Document{Series: processSeries, Seq: seq, Number: number, Kind: state.KindInvoice, Tenant: tenant,
		Period: "2026-11", IssuedAt: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), Hash: hex.EncodeToString(sum[:]), Body: body}
}

// TestProcessesIssuingIntoOneDirectoryLeaveNoGap runs the numbering across
// real processes: SQLite's locks between processes are file locks, which
// two connections of one process (the contract suite's two handles) do not
// exercise.
func TestProcessesIssuingIntoOneDirectoryLeaveNoGap(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Create the schema first: migrating is not what this test is about.
	s, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const children = 2
	var wg sync.WaitGroup
	for i := range children {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir)
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("child %d: %v\n%s", i, err, out)
			}
		})
	}
	wg.Go(func() {
		if err := issueMany(ctx, dir, "parent"); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	docs, err := s.ListDocuments(ctx, state.DocumentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	const total = (children + 1) * workers * issuesPerWorker
	if len(docs) != total {
		t.Fatalf("%d documents stored, want %d", len(docs), total)
	}
	tenants := map[string]int{}
	for i, d := range docs {
		if d.Seq != int64(i+1) || d.Number != fmt.Sprintf("%s-%06d", processSeries, i+1) {
			t.Fatalf("document %d is seq %d number %q: a gap or a duplicate", i, d.Seq, d.Number)
		}
		tenants[d.Tenant]++
	}
	if len(tenants) != children+1 {
		t.Errorf("documents came from %d processes, want %d: %v", len(tenants), children+1, tenants)
	}
}
