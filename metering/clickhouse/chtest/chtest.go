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
// Servers listen on free loopback ports (native protocol only) with their
// data in a temporary directory, and run as the current user: root is fine for
// Debian's 18.16, which is what `make test` installs (scripts/test-deps.sh).
// Without clickhouse-server installed, a test that asks for one fails under
// CI=true and is skipped elsewhere, saying how to get it.
package chtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/paasmeter/paasmeter/internal/testenv"
)

// ClusterName is the remote_servers cluster every server started here knows:
// its own cluster's shards, or itself alone for a single server.
const ClusterName = "paasmeter_test"

// startTimeout bounds how long a server may take to answer after it starts
// (18.16 answers in about 0.3 s on an idle machine).
const startTimeout = 60 * time.Second

// Server is one clickhouse-server process and its directory (configuration,
// data, logs), which outlives the process: Kill and Restart keep the data.
type Server struct {
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Cluster is servers that know each other as the shards (one replica each) of
// the remote_servers cluster Name.
type Cluster struct {
	// Name is the cluster's name in every server's remote_servers (ClusterName).
	Name string
	// Shards are the servers, in the order remote_servers lists them.
	Shards []*Server
}

// Addr returns the server's native-protocol address, host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Dir returns the server's directory: config.xml, data/, server.log, server.err.log.
func (s *Server) Dir() string { return s.dir }

// DSN creates a database of its own for t (CREATE DATABASE test_…), dropped
// when t ends, and returns the DSN of a metering store in it on this server.
func (s *Server) DSN(t testing.TB) string {
	t.Helper()
	return "clickhouse://" + s.Addr() + "/" + newDatabase(t, []*Server{s})
}

// DSN creates a database of its own for t on every shard, dropped when t
// ends, and returns the DSN of a metering store in it in Distributed mode
// over the cluster, entering through the first shard.
func (c *Cluster) DSN(t testing.TB) string {
	t.Helper()
	return "clickhouse://" + c.Shards[0].Addr() + "/" + newDatabase(t, c.Shards) + "?cluster=" + c.Name
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
			if s.running() {
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

// Kill sends SIGKILL to the server and waits until it is gone: what a crash
// or an OOM kill does. Its data directory stays for Restart.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chtest: kill server %s: %w", s.Addr(), err)
	}
	<-s.exited
	s.cmd = nil
	return nil
}

// Stop asks the server to shut down (SIGTERM) and waits until it did, or
// kills it when ctx ends first.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chtest: stop server %s: %w", s.Addr(), err)
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	return nil
}

// Restart starts the server again, on the same port and data, after Kill or
// Stop, and returns once it answers queries. A running server is killed first.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Kill(); err != nil {
		return err
	}
	return s.start(ctx)
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// start runs clickhouse-server on s's configuration and waits until it answers.
func (s *Server) start(ctx context.Context) error {
	bin, err := binary()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chtest: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.dir, out, out
	// Pdeathsig: a test binary that dies (a panic, a -timeout) takes its
	// servers with it instead of leaving them running on the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chtest: start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("chtest: clickhouse-server on %s exited at start: %s", s.Addr(), s.logTail())
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("chtest: clickhouse-server on %s did not answer within %s: %w; %s", s.Addr(), startTimeout, ctx.Err(), s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if s.ping(ctx) == nil {
			return nil
		}
	}
}

func (s *Server) ping(ctx context.Context) error {
	conn, err := ch.Open(&ch.Options{Addr: []string{s.Addr()}, DialTimeout: time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

// logTail returns the end of the server's error log, for a failure message.
func (s *Server) logTail() string {
	var b bytes.Buffer
	for _, name := range []string{"stdout.log", "server.err.log"} {
		data, _ := os.ReadFile(filepath.Join(s.dir, name))
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n--- %s:\n%s", name, data)
	}
	return b.String()
}

var configTemplate = template.Must(template.New("config").Parse(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{{.Dir}}/server.log</log>
    <errorlog>{{.Dir}}/server.err.log</errorlog>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{{.Port}}</tcp_port>
  <path>{{.Dir}}/data/</path>
  <tmp_path>{{.Dir}}/data/tmp/</tmp_path>
  <user_files_path>{{.Dir}}/data/user_files/</user_files_path>
  <format_schema_path>{{.Dir}}/data/format_schemas/</format_schema_path>
  <users_config>{{.Dir}}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <remote_servers>
    <{{.Cluster}}>{{range .Shards}}
      <shard><replica><host>127.0.0.1</host><port>{{.}}</port></replica></shard>{{end}}
    </{{.Cluster}}>
  </remote_servers>
</yandex>
`))

const usersXML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
`

// startServers starts one server per shard, each knowing all of them as the
// shards of ClusterName, in directories under parent.
func startServers(ctx context.Context, parent string, shards int) ([]*Server, error) {
	// A free port found here may be taken by another process before the
	// server binds it (tests of several packages start servers at once): try again.
	var err error
	for range 3 {
		var servers []*Server
		if servers, err = tryStartServers(ctx, parent, shards); err == nil {
			return servers, nil
		}
	}
	return nil, err
}

func tryStartServers(ctx context.Context, parent string, shards int) ([]*Server, error) {
	ports, err := freePorts(shards)
	if err != nil {
		return nil, err
	}
	servers := make([]*Server, shards)
	for i := range servers {
		dir, err := os.MkdirTemp(parent, fmt.Sprintf("shard%d-", i+1))
		if err != nil {
			return nil, fmt.Errorf("chtest: %w", err)
		}
		servers[i] = &Server{dir: dir, port: ports[i]}
		var config bytes.Buffer
		if err := configTemplate.Execute(&config, map[string]any{"Dir": dir, "Port": ports[i], "Cluster": ClusterName, "Shards": ports}); err != nil {
			return nil, fmt.Errorf("chtest: config: %w", err)
		}
		if err := errors.Join(os.WriteFile(filepath.Join(dir, "config.xml"), config.Bytes(), 0o644),
			os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o644)); err != nil {
			return nil, fmt.Errorf("chtest: %w", err)
		}
	}
	for i, s := range servers {
		if err := s.start(ctx); err != nil {
			for _, started := range servers[:i] {
				started.Kill()
			}
			return nil, err
		}
	}
	return servers, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("chtest: find a free port: %w", err)
		}
		// Held until all are found, so that the n ports differ.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// binary finds clickhouse-server; Debian puts it in /usr/sbin, which is not
// on every user's PATH.
func binary() (string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/clickhouse-server"
	if _, err := os.Stat(debian); err != nil {
		return "", errors.New("clickhouse-server is not installed: run `make test` as root (scripts/test-deps.sh installs Debian's clickhouse-server), or apt-get install clickhouse-server")
	}
	return debian, nil
}

// require fails t under CI=true and skips it elsewhere when there is no
// clickhouse-server to run.
func require(t testing.TB) {
	t.Helper()
	if _, err := binary(); err != nil {
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
	servers, err := startServers(context.Background(), parent, shards)
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
		servers, err := startServers(context.Background(), shared.dir, shards)
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
