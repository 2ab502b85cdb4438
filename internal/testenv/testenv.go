// Package testenv is what tests share about the machine they run on. Missing
// decides what a test does when the machine lacks a service or tool it needs
// (a Docker Engine, clickhouse-server, PostgreSQL, promtool, …): CI must run
// every test, so there it fails; elsewhere it skips, saying how to get what is
// missing. FreeAddr and SyncBuffer serve tests that start servers and commands.
package testenv

import (
	"bytes"
	"net"
	"os"
	"sync"
	"testing"
	"time"
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

// FreeAddr is a loopback address with a port free at the time of the call,
// for a server the test starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SyncBuffer is a bytes.Buffer that a running command or child process may
// write while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually calls check until it returns nil, failing the test with what
// and check's last error once within has passed: services, containers and
// clusters settle in their own time, and the last error says where it stood.
func Eventually(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
