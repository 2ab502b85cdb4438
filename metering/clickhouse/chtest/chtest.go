// Package chtest runs real clickhouse-server processes for tests: a single
// server, a two-shard cluster and a replicated cluster (two shards of two
// replicas on a ZooKeeper) shared by the tests of one test binary, or private
// ones that a test may SIGKILL and restart. Each test gets its own database.
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
	"github.com/paasmeter/paasmeter/metering/clickhouse/zkserver"
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

// Cluster is servers that know each other as the remote_servers cluster
// Name: shards of one replica each, or of several sharing ZooKeeper.
type Cluster struct {
	// Name is the cluster's name in every server's remote_servers (ClusterName).
	Name string
	// Servers are the servers in the order remote_servers lists them: shard
	// by shard, each shard's replicas in order (Server.Shard and
	// Server.Replica say which).
	Servers []*Server
	// ZooKeeper is the replicas' ZooKeeper, nil when shards have one replica.
	ZooKeeper *zkserver.Server
}

// DSN creates a database of its own for t (CREATE DATABASE test_…), dropped
// when t ends, and returns the DSN of a metering store in it on this server.
func (s *Server) DSN(t testing.TB) string {
	t.Helper()
	return s.Server.DSN(newDatabase(t, []*Server{s}))
}

// DSN creates a database of its own for t on every server, dropped when t
// ends, and returns the DSN of a metering store in it in Distributed mode
// over the cluster (replicated when the cluster is), entering through the
// first server.
func (c *Cluster) DSN(t testing.TB) string {
	t.Helper()
	dsn := c.Servers[0].Server.DSN(newDatabase(t, c.Servers)) + "?cluster=" + c.Name
	if c.ZooKeeper != nil {
		dsn += "&replicated=true"
	}
	return dsn
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

// Shape is the shape of a cluster: its shards and the replicas of each.
type Shape struct{ Shards, Replicas int }

// SessionTimeout is the replicas' ZooKeeper session timeout: a killed
// replica counts as alive for that long (ClickHouse's default is 30 s).
const SessionTimeout = 4 * time.Second

// startCluster starts a cluster of the given shape under parent, with a
// ZooKeeper of its own when shards have several replicas. On error, what
// it started is stopped.
func startCluster(parent string, shape Shape) (*Cluster, error) {
	program, err := chserver.Program()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: ClusterName}
	ctx := context.Background()
	var started []*chserver.Server
	if shape.Replicas > 1 {
		java, err := zkserver.Program()
		if err != nil {
			return nil, err
		}
		if c.ZooKeeper, err = zkserver.Start(ctx, java, parent); err != nil {
			return nil, fmt.Errorf("chtest: %w", err)
		}
		started, err = chserver.StartReplicated(ctx, program, parent, chserver.Layout{Cluster: ClusterName,
			Shards: shape.Shards, Replicas: shape.Replicas, ZooKeeper: c.ZooKeeper.Addr(), SessionTimeout: SessionTimeout})
		if err != nil {
			c.ZooKeeper.Kill()
			return nil, fmt.Errorf("chtest: %w", err)
		}
	} else if started, err = chserver.StartCluster(ctx, program, parent, ClusterName, shape.Shards); err != nil {
		return nil, fmt.Errorf("chtest: %w", err)
	}
	for _, s := range started {
		c.Servers = append(c.Servers, &Server{s})
	}
	return c, nil
}

// require fails t under CI=true and skips it elsewhere when there is no
// clickhouse-server to run, or no ZooKeeper for a replicated shape.
func require(t testing.TB, shape Shape) {
	t.Helper()
	if _, err := chserver.Program(); err != nil {
		testenv.Missing(t, err)
	}
	if shape.Replicas > 1 {
		if _, err := zkserver.Program(); err != nil {
			testenv.Missing(t, err)
		}
	}
}

// Start starts a server of t's own, stopped and removed when t ends: for a
// test that kills or restarts it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartCluster(t, Shape{Shards: 1, Replicas: 1}).Servers[0]
}

// StartCluster starts a cluster of t's own of the given shape (and its
// ZooKeeper when replicated), stopped and removed when t ends: for a test
// that kills or restarts its servers.
func StartCluster(t testing.TB, shape Shape) *Cluster {
	t.Helper()
	require(t, shape)
	c, err := startCluster(t.TempDir(), shape)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	return c
}

// shared holds the servers the tests of this binary share.
var shared struct {
	mu         sync.Mutex
	mainCalled bool
	dir        string
	// clusters by shape; a failed start is kept so that every test that
	// wants those servers fails with its reason.
	clusters map[Shape]*Cluster
	errs     map[Shape]error
}

// Single returns the server the tests of this binary share, starting it on
// first use. Tests must not kill it: Start gives a private one.
func Single(t testing.TB) *Server {
	t.Helper()
	return sharedCluster(t, Shape{Shards: 1, Replicas: 1}).Servers[0]
}

// TwoShards returns the two-shard cluster the tests of this binary share,
// starting it on first use.
func TwoShards(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster(t, Shape{Shards: 2, Replicas: 1})
}

// Replicated returns the cluster of two shards of two replicas, on a
// ZooKeeper of its own, that the tests of this binary share, starting it on
// first use. Tests must not kill its servers: StartCluster gives private ones.
func Replicated(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster(t, Shape{Shards: 2, Replicas: 2})
}

func sharedCluster(t testing.TB, shape Shape) *Cluster {
	t.Helper()
	require(t, shape)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.mainCalled {
		t.Fatal("chtest: call chtest.Main from TestMain, which stops the shared servers when the tests end")
	}
	if shared.clusters[shape] == nil && shared.errs[shape] == nil {
		shared.clusters[shape], shared.errs[shape] = startCluster(shared.dir, shape)
	}
	if err := shared.errs[shape]; err != nil {
		t.Fatal(err)
	}
	return shared.clusters[shape]
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
	shared.clusters, shared.errs = map[Shape]*Cluster{}, map[Shape]error{}
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for _, c := range shared.clusters {
		if c != nil {
			c.stop()
		}
	}
	return code
}

// stop stops the cluster's servers, then its ZooKeeper.
func (c *Cluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range c.Servers {
		wg.Go(func() { s.Stop(ctx) })
	}
	wg.Wait()
	if c.ZooKeeper != nil {
		c.ZooKeeper.Stop(ctx)
	}
}
