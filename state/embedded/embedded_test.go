package embedded_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/internal/privfile/privfiletest"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/statetest"
)

// TestContract runs the contract with two Stores on one directory: what two
// processes sharing a data directory hold.
func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) (state.Store, state.Store) {
		dir := t.TempDir()
		a, err := embedded.Open(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := embedded.Open(context.Background(), dir)
		if err != nil {
			a.Close()
			t.Fatal(err)
		}
		return a, b
	})
}

func TestReopenKeepsDocuments(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Freeze(ctx, []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = embedded.Open(ctx, dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if got, err := s.FrozenContent(ctx, h); err != nil || string(got) != `{"v":1}` {
		t.Errorf("after reopen FrozenContent = %q, %v", got, err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	s.Close()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = embedded.Open(ctx, dir)
	if err == nil {
		s.Close()
		t.Fatal("a schema newer than the binary was opened")
	}
	if !strings.Contains(err.Error(), "newer than this binary") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestAStoreOfTheFirstSchemaGainsMaintenanceWindowsAndClosedMonths opens a
// database as the first schema left it, with an issued invoice, as an
// upgrade finds it.
func TestAStoreOfTheFirstSchemaGainsMaintenanceWindowsAndClosedMonths(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Freeze(ctx, []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	issued := statetest.IssueBeforeUpgrade(t, s)
	path := s.Path()
	s.Close()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP TABLE maintenance_windows", "DROP TABLE month_closes", "PRAGMA user_version = 1"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s, err = embedded.Open(ctx, dir)
	if err != nil {
		t.Fatalf("opening a first-schema store: %v", err)
	}
	defer s.Close()
	if got, err := s.FrozenContent(ctx, h); err != nil || string(got) != `{"v":1}` {
		t.Errorf("after the upgrade FrozenContent = %q, %v", got, err)
	}
	w, err := s.DeclareWindow(ctx, state.WindowRecord{Start: statetest.Base, DurationSeconds: 60, Reason: "r", DeclaredAt: statetest.Base,
		Source: state.WindowSourceAPI}, state.AuditEntry{Time: statetest.Base, Actor: "ops", Action: "maintenance.declare"})
	if err != nil || w.ID != "1" {
		t.Errorf("DeclareWindow after the upgrade = %+v, %v; want window 1", w, err)
	}
	statetest.WantClosedAfterUpgrade(t, s, issued)
}

// TestDataFilesArePrivate: the database, its -wal and -shm files and the
// directory are the service user's alone, whatever the umask.
func TestDataFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	privfiletest.WithoutUmask(t, func() {
		s, err := embedded.Open(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Freeze(context.Background(), []byte(`{"v":1}`)); err != nil {
			t.Fatal(err)
		}
		seen := privfiletest.CheckTree(t, dir)
		for _, name := range []string{embedded.FileName, embedded.FileName + "-wal", embedded.FileName + "-shm"} {
			if !seen[name] {
				t.Errorf("%s was not created (files: %v)", name, seen)
			}
		}
	})
}
