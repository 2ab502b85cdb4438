// Package chtest runs real clickhouse-server processes for tests: a single
// server and a two-shard cluster shared by the tests of one test binary, or a
// private server that a test may SIGKILL and restart. Each test gets its own
// database.
//
// A package that uses it stops the servers when its tests end by calling Main
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }
//
// The servers are package chserver's: on free loopback ports (native protocol
// only), with their data in a temporary directory. Without clickhouse-server
// installed, a test that asks for one fails under CI=true and is skipped
// elsewhere, saying how to get it.
package chtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chserver"
)

// ClusterName is the remote_servers cluster every server started here knows:
// its own cluster's shards, or itself alone for a single server.
const ClusterName = "paasmeter_test"

// Server is one clickhouse-server process and its directory, which outlives
// the process: Kill and Restart keep the data. Its DSN method gives each test
// a database of its own.
type Server struct {
	*chserver.Server
}

// Cluster is servers that know each other as the shards (one replica each) of
// the remote_servers cluster Name.
type Cluster struct {
	// Name is the cluster's name in every server's remote_servers (ClusterName).
	Name string
	// Shards are the servers, in the order remote_servers lists them.
	Shards []*Server
}

// DSN creates a database of its own for t (CREATE DATABASE test_…), dropped
// when t ends, and returns the DSN of a metering store in it on this server.
func (s *Server) DSN(t testing.TB) string {
	t.Helper()
	return s.Server.DSN(newDatabase(t, []*Server{s}))
}

// DSN creates a database of its own for t on every shard, dropped when t
// ends, and returns the DSN of a metering store in it in Distributed mode
// over the cluster, entering through the first shard.
func (c *Cluster) DSN(t testing.TB) string {
	t.Helper()
	return c.Shards[0].Server.DSN(newDatabase(t, c.Shards)) + "?cluster=" + c.Name
}

var dbSeq atomic.Int64

var notIdent = regexp.MustCompile(`[^a-z0-9]+`)

func newDatabase(t testing.TB, servers []*Server) string {
	t.Helper()
	name := strings.Trim(notIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	db := fmt.Sprintf("test_%d_%d_%s", os.Getpid(), dbSeq.Add(1), name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range servers {
		if err := s.exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatalf("chtest: create database %s on %s: %v", db, s.Addr(), err)
		}
	}
	t.Cleanup(func() {
		// A test may leave a server killed: its database goes with its directory.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range servers {
			if s.Running() {
				if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
					t.Logf("chtest: drop database %s on %s: %v", db, s.Addr(), err)
				}
			}
		}
	})
	return db
}

// exec runs one statement on the server.
func (s *Server) exec(ctx context.Context, query string) error {
	conn, err := ch.Open(&ch.Options{Addr: []string{s.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, query)
}

// startServers starts a cluster of the given number of shards under parent.
func startServers(parent string, shards int) ([]*Server, error) {
	program, err := chserver.Program()
	if err != nil {
		return nil, err
	}
	started, err := chserver.StartCluster(context.Background(), program, parent, ClusterName, shards)
	if err != nil {
		return nil, fmt.Errorf("chtest: %w", err)
	}
	servers := make([]*Server, len(started))
	for i, s := range started {
		servers[i] = &Server{s}
	}
	return servers, nil
}

// require fails t under CI=true and skips it elsewhere when there is no
// clickhouse-server to run.
func require(t testing.TB) {
	t.Helper()
	if _, err := chserver.Program(); err != nil {
		testenv.Missing(t, err)
	}
}

// Start starts a server of t's own, stopped and removed when t ends: for a
// test that kills or restarts it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartCluster(t, 1).Shards[0]
}

// StartCluster starts a cluster of t's own with the given number of shards,
// stopped and removed when t ends.
func StartCluster(t testing.TB, shards int) *Cluster {
	t.Helper()
	require(t)
	parent := t.TempDir()
	servers, err := startServers(parent, shards)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAll(servers) })
	return &Cluster{Name: ClusterName, Shards: servers}
}

// shared holds the servers the tests of this binary share.
var shared struct {
	mu         sync.Mutex
	mainCalled bool
	dir        string
	servers    []*Server
	// clusters by number of shards; a failed start is kept so that every
	// test that wants those servers fails with its reason.
	clusters map[int]*Cluster
	errs     map[int]error
}

// Single returns the server the tests of this binary share, starting it on
// first use. Tests must not kill it: Start gives a private one.
func Single(t testing.TB) *Server {
	t.Helper()
	return sharedCluster(t, 1).Shards[0]
}

// TwoShards returns the two-shard cluster the tests of this binary share,
// starting it on first use.
func TwoShards(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster(t, 2)
}

func sharedCluster(t testing.TB, shards int) *Cluster {
	t.Helper()
	require(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.mainCalled {
		t.Fatal("chtest: call chtest.Main from TestMain, which stops the shared servers when the tests end")
	}
	if shared.clusters[shards] == nil && shared.errs[shards] == nil {
		servers, err := startServers(shared.dir, shards)
		if err != nil {
			shared.errs[shards] = err
		} else {
			shared.clusters[shards] = &Cluster{Name: ClusterName, Shards: servers}
			shared.servers = append(shared.servers, servers...)
		}
	}
	if err := shared.errs[shards]; err != nil {
		t.Fatal(err)
	}
	return shared.clusters[shards]
}

// Main runs the tests and then stops the servers they shared. Use it in
// TestMain: os.Exit(chtest.Main(m)).
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "paasmeter-clickhouse-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	shared.mu.Lock()
	shared.mainCalled, shared.dir = true, dir
	shared.clusters, shared.errs = map[int]*Cluster{}, map[int]error{}
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	stopAll(shared.servers)
	return code
}

func stopAll(servers []*Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { s.Stop(ctx) })
	}
	wg.Wait()
}
