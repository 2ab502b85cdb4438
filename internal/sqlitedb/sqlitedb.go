// Package sqlitedb opens the SQLite databases of the embedded stores (the
// metering store and the state store) the way both need them: durable
// writes through one connection, reads that never block them, and a schema
// migrated in order.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/paasmeter/paasmeter/internal/migrate"
	"github.com/paasmeter/paasmeter/internal/privfile"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// DB is an embedded store's database file and its two pools.
type DB struct {
	// W is the writer: one connection, in WAL mode with synchronous=FULL, so
	// a commit returns once it reached the disk. Its transactions are BEGIN
	// IMMEDIATE: they take SQLite's one write lock before they read, so two
	// processes on the same file queue on that lock (the busy timeout)
	// instead of reading what the other is about to change, and this
	// process's writers queue in Go, honouring their contexts.
	W *sql.DB
	// R is a read-only pool: reads never block writes.
	R    *sql.DB
	Path string
}

// Open opens (creating it and dir if needed) the database file in dir and
// migrates its schema: migrations are applied in order, and PRAGMA
// user_version records how many ran, so never edit one that has shipped:
// append a new one. params are more connection parameters
// ("&_cache_size=-65536"), "" for none.
func Open(ctx context.Context, dir, file, params string, migrations []string) (*DB, error) {
	// The stores hold usage, container logs (which may hold health data),
	// invoices and the audit log: only the service's user reads them.
	if err := privfile.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, file)
	if err := privfile.SQLite(path); err != nil {
		return nil, err
	}
	dsn := func(extra string) string {
		return "file:" + url.PathEscape(path) + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_foreign_keys=1" + params + extra
	}
	w, err := sql.Open("sqlite3", dsn("&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	if err := migrateDB(ctx, w, migrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", dsn("&mode=ro"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	return &DB{W: w, R: r, Path: path}, nil
}

func migrateDB(ctx context.Context, db *sql.DB, migrations []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	err = migrate.Apply(v, migrations, func(_ int, stmts string) error {
		_, err := tx.ExecContext(ctx, stmts)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: record schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
