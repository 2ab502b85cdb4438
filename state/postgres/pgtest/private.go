package pgtest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// Server is a PostgreSQL server of one test's own, which the test may stop
// and start again under its clients (a fault test): the same directory, so
// the same data, on the same port, so the same DSN.
type Server struct {
	c *cluster
}

// privateDB is the database Private creates for the test.
const privateDB = "paasmeter"

// Private starts a server for t alone, stopped and removed when t ends, with
// an empty database whose DSN is DSN. It does not need Main.
func Private(t testing.TB) *Server {
	t.Helper()
	require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{c: c}
	t.Cleanup(func() {
		if err := s.c.stop(); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+privateDB); err != nil {
		t.Fatalf("pgtest: create database %s: %v", privateDB, err)
	}
	// The admin pool would only see its connections broken by Stop.
	c.admin.Close()
	return s
}

// DSN returns the DSN of the test's database, the same across Stop and Start.
func (s *Server) DSN() string { return s.c.dsn(privateDB) }

// Stop shuts the server down as `pg_ctl stop` does (a fast shutdown: the
// clients' sessions are ended, their transactions rolled back, the data
// checkpointed) and returns once postgres has exited: its port refuses
// connections from then on.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("pgtest: stop postgres on port %d: %v", s.c.port, err)
	}
	select {
	case <-s.c.exited:
	case <-time.After(startTimeout):
		t.Fatalf("pgtest: postgres on port %d still runs %s after a fast shutdown: %s", s.c.port, startTimeout, logTail(logFile(s.c.dir)))
	}
}

// Start starts the stopped server again on its directory and port, and
// returns once it accepts connections. It fails t if another process took
// the port meanwhile.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := run(ctx, s.c.bin, s.c.cred, s.c.dir, s.c.port)
	if err != nil {
		t.Fatal(fmt.Errorf("pgtest: start postgres again: %w", err))
	}
	c.admin.Close()
	s.c = c
}
