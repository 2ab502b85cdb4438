// Package chserver runs throwaway clickhouse-server processes: servers on free
// loopback ports (native protocol only), running as the current user with
// their configuration, data and logs in a directory of their own. The tests'
// servers (metering/clickhouse/chtest) and the benchmarks' (cmd/paasmeter-bench)
// are started here.
//
// Root is fine for Debian's 18.16, which scripts/test-deps.sh installs.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"text/template"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/paasmeter/paasmeter/internal/loopback"
)

// startTimeout bounds how long a server may take to answer after it starts
// (18.16 answers in about 0.3 s on an idle machine).
const startTimeout = 60 * time.Second

// Server is one clickhouse-server process and its directory (configuration,
// data, logs), which outlives the process: Kill and Restart keep the data.
type Server struct {
	program string
	dir     string
	port    int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
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
	// A free port found here may be taken by another process before the
	// server binds it (tests of several packages start servers at once): try again.
	var err error
	for range 3 {
		var servers []*Server
		if servers, err = tryStartCluster(ctx, program, parent, cluster, shards); err == nil {
			return servers, nil
		}
	}
	return nil, err
}

func tryStartCluster(ctx context.Context, program, parent, cluster string, shards int) ([]*Server, error) {
	ports, err := loopback.FreePorts(shards)
	if err != nil {
		return nil, err
	}
	servers := make([]*Server, shards)
	for i := range servers {
		dir, err := os.MkdirTemp(parent, fmt.Sprintf("shard%d-", i+1))
		if err != nil {
			return nil, fmt.Errorf("chserver: %w", err)
		}
		servers[i] = &Server{program: program, dir: dir, port: ports[i]}
		var config bytes.Buffer
		if err := configTemplate.Execute(&config, map[string]any{"Dir": dir, "Port": ports[i], "Cluster": cluster, "Shards": ports}); err != nil {
			return nil, fmt.Errorf("chserver: config: %w", err)
		}
		if err := errors.Join(os.WriteFile(filepath.Join(dir, "config.xml"), config.Bytes(), 0o644),
			os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o644)); err != nil {
			return nil, fmt.Errorf("chserver: %w", err)
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

// Addr returns the server's native-protocol address, host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Dir returns the server's directory: config.xml, data/, server.log, server.err.log.
func (s *Server) Dir() string { return s.dir }

// DSN returns the DSN of a metering store in database on this server.
func (s *Server) DSN(database string) string { return "clickhouse://" + s.Addr() + "/" + database }

// Pid returns the server's process id, 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server's process was started and not killed
// or stopped since.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Kill sends SIGKILL to the server and waits until it is gone: what a crash
// or an OOM kill does. Its directory stays for Restart.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chserver: kill server %s: %w", s.Addr(), err)
	}
	<-s.exited
	s.cmd = nil
	return nil
}

// Stop asks the server to shut down (SIGTERM) and waits until it did, or
// kills it when ctx ends first. Its directory stays.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chserver: stop server %s: %w", s.Addr(), err)
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

// start runs clickhouse-server on s's configuration and waits until it answers.
func (s *Server) start(ctx context.Context) error {
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chserver: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(s.program, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.dir, out, out
	// Pdeathsig: a process that dies (a test's panic or -timeout, a killed
	// benchmark) takes its servers with it instead of leaving them running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chserver: start %s: %w", s.program, err)
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
			return fmt.Errorf("chserver: clickhouse-server on %s exited at start: %s", s.Addr(), s.logTail())
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("chserver: clickhouse-server on %s did not answer within %s: %w; %s", s.Addr(), startTimeout, ctx.Err(), s.logTail())
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
