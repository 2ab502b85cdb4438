package open_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/open"
)

func TestNoDSNOpensTheEmbeddedStore(t *testing.T) {
	dir := t.TempDir()
	s, err := open.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*embedded.Store); !ok {
		t.Errorf("Open with no DSN returned a %T, want the embedded store", s)
	}
	if _, err := os.Stat(filepath.Join(dir, embedded.FileName)); err != nil {
		t.Errorf("no %s in the data directory: %v", embedded.FileName, err)
	}
}

func TestPostgresDSNOpensPostgres(t *testing.T) {
	// A closed port: the error says which adapter tried (the PostgreSQL
	// adapter's own tests open real databases).
	for _, scheme := range []string{"postgres", "postgresql"} {
		_, err := open.Open(context.Background(), scheme+"://u:secret@127.0.0.1:1/pm?connect_timeout=1", t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "postgres state store") {
			t.Errorf("Open(%s://…) on a closed port: %v, want the PostgreSQL adapter's error", scheme, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

func TestOtherDSNsAreRefusedWithoutThePassword(t *testing.T) {
	for _, dsn := range []string{"clickhouse://u:secret@ch:9000/pm", "mysql://u:secret@db/pm", "postgres://u:secret@db:5432/%zz"} {
		_, err := open.Open(context.Background(), dsn, t.TempDir())
		if err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if !strings.Contains(err.Error(), "state dsn") || strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q): %q; want a state dsn error without the password", dsn, err)
		}
	}
}
