// Package open opens the state store a configuration names: the embedded
// store in the data directory by default, PostgreSQL for a postgres:// DSN.
// It lives apart from package state because it imports the adapters, which
// import state.
package open

import (
	"context"
	"fmt"
	"net/url"

	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/postgres"
)

// Open opens the state store of dsn: the embedded store in dataDir when dsn
// is empty, PostgreSQL when it is postgres://… or postgresql://….
func Open(ctx context.Context, dsn, dataDir string) (state.Store, error) {
	if dsn == "" {
		return embedded.Open(ctx, dataDir)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// url's message quotes the DSN, password and all.
		return nil, fmt.Errorf("state dsn: not a URL (postgres://user:password@host:5432/database)")
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		return postgres.Open(ctx, dsn)
	}
	return nil, fmt.Errorf("state dsn: scheme %q is not supported: postgres://user:password@host:5432/database, or none for the embedded store", u.Scheme)
}
