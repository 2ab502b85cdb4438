// Package chserver runs throwaway clickhouse-server processes: servers on free
// loopback ports (native protocol only), running as the current user with
// their configuration, data and logs in a directory of their own: one server,
// shards of one cluster, or shards of several replicas sharing a ZooKeeper
// (metering/clickhouse/zkserver starts one). The tests' servers
// (metering/clickhouse/chtest) and the benchmarks' (cmd/paasmeter-bench) are
// started here.
//
// Root is fine for Debian's 18.16, which scripts/test-deps.sh installs.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/paasmeter/paasmeter/internal/childproc"
	"github.com/paasmeter/paasmeter/internal/loopback"
)

// startTimeout bounds how long a server may take to answer after it starts
// (18.16 answers in about 0.3 s on an idle machine).
const startTimeout = 60 * time.Second

// Server is one clickhouse-server process and its directory (configuration,
// data, logs), which outlives the process: Kill and Restart keep the data.
type Server struct {
	// Process starts, kills, stops and restarts the server.
	*childproc.Process
	dir            string
	port           int
	shard, replica int
}

// Program finds clickhouse-server; Debian puts it in /usr/sbin, which is not
// on every user's PATH.
func Program() (string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/clickhouse-server"
	if _, err := os.Stat(debian); err != nil {
		return "", errors.New("clickhouse-server is not installed: run `make test` as root (scripts/test-deps.sh installs Debian's clickhouse-server), or apt-get install clickhouse-server")
	}
	return debian, nil
}

// StartCluster starts program (a clickhouse-server) once per shard, each in a
// directory of its own under parent and knowing all of them as the shards
// (one replica each) of the remote_servers cluster named cluster, and returns
// once every one answers. The servers die with this process, even when it is
// killed.
func StartCluster(ctx context.Context, program, parent, cluster string, shards int) ([]*Server, error) {
	return start(ctx, program, parent, Layout{Cluster: cluster, Shards: shards, Replicas: 1})
}

// Layout is the cluster StartReplicated starts.
type Layout struct {
	// Cluster names the cluster in every server's remote_servers.
	Cluster string
	// Shards and Replicas count the shards and the replicas of each.
	Shards, Replicas int
	// ZooKeeper is the host:port of the ZooKeeper the replicas share.
	ZooKeeper string
	// SessionTimeout is the servers' ZooKeeper session timeout: how long a
	// killed replica still counts as alive.
	SessionTimeout time.Duration
}

// StartReplicated starts Shards × Replicas servers of program that know each
// other as the cluster l.Cluster (internal_replication: a Distributed table
// writes to one replica of a shard and ReplicatedMergeTree copies the part to
// the others), share the ZooKeeper at l.ZooKeeper (also for ON CLUSTER DDL)
// and have the macros {shard} (1, 2, …) and {replica} (its host:port). It
// returns them shard by shard, replicas in order, once every one answers.
func StartReplicated(ctx context.Context, program, parent string, l Layout) ([]*Server, error) {
	if l.ZooKeeper == "" || l.Replicas < 1 || l.Shards < 1 {
		return nil, fmt.Errorf("chserver: a replicated cluster needs shards, replicas and a ZooKeeper, got %+v", l)
	}
	if _, _, err := net.SplitHostPort(l.ZooKeeper); err != nil {
		return nil, fmt.Errorf("chserver: ZooKeeper address %q: %w", l.ZooKeeper, err)
	}
	if l.SessionTimeout <= 0 {
		l.SessionTimeout = 30 * time.Second // ClickHouse's default
	}
	return start(ctx, program, parent, l)
}

func start(ctx context.Context, program, parent string, l Layout) ([]*Server, error) {
	// A free port found here may be taken by another process before the
	// server binds it (tests of several packages start servers at once): try again.
	var err error
	for range 3 {
		var servers []*Server
		if servers, err = tryStart(ctx, program, parent, l); err == nil {
			return servers, nil
		}
	}
	return nil, err
}

// replicaConfig is one server's place in the cluster, for configTemplate.
type replicaConfig struct{ Port, InterserverPort, Shard, Replica int }

func tryStart(ctx context.Context, program, parent string, l Layout) ([]*Server, error) {
	n := l.Shards * l.Replicas
	ports, err := loopback.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	shards := make([][]replicaConfig, l.Shards)
	for i := range n {
		shard, replica := i/l.Replicas+1, i%l.Replicas+1
		shards[shard-1] = append(shards[shard-1], replicaConfig{Port: ports[2*i], InterserverPort: ports[2*i+1], Shard: shard, Replica: replica})
	}
	var servers []*Server
	for _, shard := range shards {
		for _, r := range shard {
			name := fmt.Sprintf("shard%d-", r.Shard)
			if l.Replicas > 1 {
				name = fmt.Sprintf("shard%d-replica%d-", r.Shard, r.Replica)
			}
			dir, err := os.MkdirTemp(parent, name)
			if err != nil {
				return nil, fmt.Errorf("chserver: %w", err)
			}
			s := &Server{dir: dir, port: r.Port, shard: r.Shard, replica: r.Replica}
			s.Process = childproc.New(childproc.Spec{
				Name:         "chserver: clickhouse-server on " + s.Addr(),
				Argv:         []string{program, "--config-file=" + filepath.Join(dir, "config.xml")},
				Dir:          dir,
				StartTimeout: startTimeout,
				Ready:        s.ping,
				LogTail:      s.logTail,
			})
			var config bytes.Buffer
			zkHost, zkPort, _ := net.SplitHostPort(l.ZooKeeper)
			err = configTemplate.Execute(&config, map[string]any{"Dir": dir, "Self": r, "Layout": l, "Shards": shards,
				"ZooKeeperHost": zkHost, "ZooKeeperPort": zkPort, "SessionTimeoutMs": l.SessionTimeout.Milliseconds()})
			if err != nil {
				return nil, fmt.Errorf("chserver: config: %w", err)
			}
			if err := errors.Join(os.WriteFile(filepath.Join(dir, "config.xml"), config.Bytes(), 0o644),
				os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o644)); err != nil {
				return nil, fmt.Errorf("chserver: %w", err)
			}
			servers = append(servers, s)
		}
	}
	for i, s := range servers {
		if err := s.Start(ctx); err != nil {
			for _, started := range servers[:i] {
				started.Kill()
			}
			return nil, err
		}
	}
	return servers, nil
}

// Addr returns the server's native-protocol address, host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Dir returns the server's directory: config.xml, data/, server.log, server.err.log.
func (s *Server) Dir() string { return s.dir }

// Shard returns the server's shard number in its cluster, from 1.
func (s *Server) Shard() int { return s.shard }

// Replica returns the server's replica number in its shard, from 1.
func (s *Server) Replica() int { return s.replica }

// DSN returns the DSN of a metering store in database on this server.
func (s *Server) DSN(database string) string { return "clickhouse://" + s.Addr() + "/" + database }

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
  <tcp_port>{{.Self.Port}}</tcp_port>
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
    <{{.Layout.Cluster}}>{{range .Shards}}
      <shard>{{if gt $.Layout.Replicas 1}}<internal_replication>true</internal_replication>{{end}}{{range .}}
        <replica><host>127.0.0.1</host><port>{{.Port}}</port></replica>{{end}}
      </shard>{{end}}
    </{{.Layout.Cluster}}>
  </remote_servers>{{if .Layout.ZooKeeper}}
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{{.Self.InterserverPort}}</interserver_http_port>
  <zookeeper>
    <node><host>{{.ZooKeeperHost}}</host><port>{{.ZooKeeperPort}}</port></node>
    <session_timeout_ms>{{.SessionTimeoutMs}}</session_timeout_ms>
  </zookeeper>
  <macros><shard>{{.Self.Shard}}</shard><replica>127.0.0.1:{{.Self.Port}}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>{{end}}
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
