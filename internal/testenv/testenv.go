// Package testenv decides what a test does when the machine lacks a service
// or tool it needs (a Docker Engine, clickhouse-server, PostgreSQL, promtool,
// …): CI must run every test, so there it fails; elsewhere it skips, saying
// how to get what is missing.
package testenv

import (
	"os"
	"testing"
)

// Missing ends the test for lack of something: t.Fatal under CI=true,
// t.Skip elsewhere. args, as for t.Skip, say what is missing and how to get it.
func Missing(t testing.TB, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(args...)
	}
	t.Skip(args...)
}
