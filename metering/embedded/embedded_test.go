package embedded_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/privfile/privfiletest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/metering/storetest"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) metering.Store {
		s, err := embedded.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Capabilities{})
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
		if _, err := s.AppendUsage(context.Background(), []usage.Record{usagetest.Record("caami", "abc", usage.MeterCPU, time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC), 100)}); err != nil {
			t.Fatal(err)
		}
		privfiletest.CheckTreeHas(t, dir, embedded.FileName, embedded.FileName+"-wal", embedded.FileName+"-shm")
	})
}
