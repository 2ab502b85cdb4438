package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/postgres"
	"github.com/paasmeter/paasmeter/state/postgres/pgtest"
	"github.com/paasmeter/paasmeter/state/statetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open opens the store on dsn, failing the test if it cannot; the test
// closes it once done with it (Close twice is harmless).
func open(t *testing.T, dsn string) *postgres.Store { return statetest.Open(t, postgres.Open, dsn) }

// serializable makes SERIALIZABLE the default isolation of a DSN's
// sessions, as an operator may configure a database: the store must not
// depend on the default (pgx passes unknown DSN parameters to the server).
const serializable = "&default_transaction_isolation=serializable"

// TestContract runs the contract with two Stores (two pools) on one
// database: what two collectors hold. The second one's sessions default to
// SERIALIZABLE, under which waiting for a series row would end in
// serialization failures if the store did not ask for READ COMMITTED.
func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) (state.Store, state.Store) {
		dsn := pgtest.DSN(t)
		return open(t, dsn), open(t, dsn+serializable)
	})
}

func TestSerializationFailuresAreRetried(t *testing.T) {
	s := open(t, pgtest.DSN(t))
	ctx := context.Background()
	conflict := &pgconn.PgError{Code: "40001", Message: "could not serialize access due to concurrent update"}
	var seqs []int64
	d, err := s.Issue(ctx, "PM-2026", func(seq int64) (state.Document, error) {
		seqs = append(seqs, seq)
		if len(seqs) < 3 {
			return state.Document{}, conflict
		}
		return document(seq), nil
	}, state.AuditEntry{Actor: "billing", Action: "invoice.issue"})
	if err != nil {
		t.Fatalf("Issue after two serialization failures: %v", err)
	}
	if !slices.Equal(seqs, []int64{1, 1, 1}) || d.Seq != 1 {
		t.Errorf("build called with %v and the document got seq %d; want 1 each time: a failed attempt consumed a number", seqs, d.Seq)
	}
	calls := 0
	_, err = s.Issue(ctx, "PM-2026", func(int64) (state.Document, error) { calls++; return state.Document{}, conflict }, state.AuditEntry{Actor: "billing", Action: "invoice.issue"})
	if !errors.Is(err, conflict) || calls < 2 || calls > 10 {
		t.Errorf("Issue failing on every attempt: %v after %d calls; want the conflict after a few attempts", err, calls)
	}
	calls = 0
	boom := errors.New("no rate card")
	if _, err = s.Issue(ctx, "PM-2026", func(int64) (state.Document, error) { calls++; return state.Document{}, boom }, state.AuditEntry{}); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("Issue with a failing build: %v after %d calls; want the build's error after one", err, calls)
	}
}

// document is a valid invoice numbered seq in PM-2026.
func document(seq int64) state.Document {
	body := fmt.Appendf(nil, `{"number":"PM-2026-%06d"}`, seq)
	sum := sha256.Sum256(body)
	return state.Document{Series: "PM-2026", Seq: seq, Number: fmt.Sprintf("PM-2026-%06d", seq), Kind: state.KindInvoice,
		Tenant: "caami", Period: "2026-11", IssuedAt: statetest.Base, Hash: hex.EncodeToString(sum[:]), Body: body}
}

func TestCollectorsStartingTogetherMigrateOnce(t *testing.T) {
	// Under SERIALIZABLE, a collector that waited for the migration lock
	// would read schema_migrations as it was before the wait.
	dsn := pgtest.DSN(t) + serializable
	const collectors = 6
	var wg sync.WaitGroup
	for range collectors {
		wg.Go(func() {
			s, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var versions, applied int
	query(t, dsn, "SELECT MAX(version), COUNT(*) FROM schema_migrations", &versions, &applied)
	if applied != versions {
		t.Errorf("schema_migrations holds %d rows for %d versions: a migration was applied twice", applied, versions)
	}
	// And the schema works.
	s := open(t, dsn)
	if _, err := s.Freeze(context.Background(), []byte(`{}`)); err != nil {
		t.Error(err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	open(t, dsn).Close()
	exec(t, dsn, "INSERT INTO schema_migrations (version) VALUES (999)")
	s, err := postgres.Open(context.Background(), dsn)
	statetest.WantNewerSchemaRefused(t, s, err)
}

// TestADatabaseOfTheFirstSchemaGainsMaintenanceWindowsAndClosedMonths
// migrates a database as the first schema left it, with an issued invoice,
// as an upgrade finds it.
func TestADatabaseOfTheFirstSchemaGainsMaintenanceWindowsAndClosedMonths(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := open(t, dsn)
	before := statetest.BeforeUpgrade(t, s)
	s.Close()
	exec(t, dsn, "DROP TABLE leases; DROP TABLE month_closes; DROP TABLE maintenance_windows; DROP SEQUENCE maintenance_window_seq; DELETE FROM schema_migrations WHERE version > 1")
	before.Check(t, open(t, dsn))
	var latest, applied int
	query(t, dsn, "SELECT MAX(version), COUNT(*) FROM schema_migrations", &latest, &applied)
	if latest < 2 || applied != latest {
		t.Errorf("schema_migrations holds %d rows up to version %d, want every version from 1, each once", applied, latest)
	}
}

func TestUnreachableServerIsNamed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := postgres.Open(ctx, "postgres://paasmeter:secret@127.0.0.1:1/state?connect_timeout=1")
	if err == nil {
		t.Fatal("opened a store on a closed port")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q shows the password", err)
	}
}

func query(t *testing.T, dsn, sql string, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
