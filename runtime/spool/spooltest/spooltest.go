// Package spooltest opens spools for tests.
package spooltest

import (
	"path/filepath"
	"testing"

	"github.com/paasmeter/paasmeter/runtime/spool"
)

// Pair opens an agent's two spools, the outgoing one and the dead letters,
// in a temporary directory of t, and closes them when t ends.
func Pair(t testing.TB) (out, dead *spool.Spool) {
	t.Helper()
	dir := t.TempDir()
	out, err := spool.Open(filepath.Join(dir, "outgoing"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	if dead, err = spool.Open(filepath.Join(dir, "dead"), spool.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	return out, dead
}
