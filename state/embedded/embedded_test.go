package embedded_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/paasmeter/paasmeter/internal/privfile/privfiletest"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/statetest"
)

// open opens the store in dir, failing the test if it cannot; the test
// closes it once done with it (Close twice is harmless).
func open(t *testing.T, dir string) *embedded.Store { return statetest.Open(t, embedded.Open, dir) }

// freeze freezes the content every upgrade test reads back.
func freeze(t *testing.T, s *embedded.Store) string {
	t.Helper()
	h, err := s.Freeze(context.Background(), []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// wantFrozen checks that s holds what freeze froze as h.
func wantFrozen(t *testing.T, s *embedded.Store, h, when string) {
	t.Helper()
	if got, err := s.FrozenContent(context.Background(), h); err != nil || string(got) != `{"v":1}` {
		t.Errorf("%s FrozenContent = %q, %v", when, got, err)
	}
}

// tamper closes s and runs queries on its file behind its back, as an older
// binary or an operator would leave it.
func tamper(t *testing.T, s *embedded.Store, queries ...string) {
	t.Helper()
	s.Close()
	db, err := sql.Open("sqlite3", "file:"+s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestContract runs the contract with two Stores on one directory: what two
// processes sharing a data directory hold.
func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) (state.Store, state.Store) {
		dir := t.TempDir()
		return open(t, dir), open(t, dir)
	})
}

func TestReopenKeepsDocuments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	h := freeze(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantFrozen(t, open(t, dir), h, "after reopen")
}

func TestNewerSchemaIsRefused(t *testing.T) {
	dir := t.TempDir()
	tamper(t, open(t, dir), "PRAGMA user_version = 99")
	s, err := embedded.Open(context.Background(), dir)
	statetest.WantNewerSchemaRefused(t, s, err)
}

// TestAStoreOfTheFirstSchemaGainsMaintenanceWindowsAndClosedMonths opens a
// database as the first schema left it, with an issued invoice, as an
// upgrade finds it.
func TestAStoreOfTheFirstSchemaGainsMaintenanceWindowsAndClosedMonths(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	before := statetest.BeforeUpgrade(t, s)
	tamper(t, s, "DROP TABLE maintenance_windows", "DROP TABLE month_closes", "PRAGMA user_version = 1")
	s, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("opening a first-schema store: %v", err)
	}
	defer s.Close()
	before.Check(t, s)
}

// TestDataFilesArePrivate: the database, its -wal and -shm files and the
// directory are the service user's alone, whatever the umask.
func TestDataFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	privfiletest.WithoutUmask(t, func() {
		freeze(t, open(t, dir))
		privfiletest.CheckTreeHas(t, dir, embedded.FileName, embedded.FileName+"-wal", embedded.FileName+"-shm")
	})
}
