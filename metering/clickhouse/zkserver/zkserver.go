// Package zkserver runs a throwaway standalone ZooKeeper for the replicated
// ClickHouse tests: Debian's zookeeper package run by Debian's java, as
// zkServer.sh runs it (the jar's manifest names its dependencies), on a free
// loopback port with its configuration, data and log in a directory of its
// own. The server can be killed, stopped and started again on the same data.
package zkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/paasmeter/paasmeter/internal/childproc"
	"github.com/paasmeter/paasmeter/internal/loopback"
)

// Debian's zookeeper package: its jar and the directory of its log4j.properties.
const (
	jar     = "/usr/share/java/zookeeper.jar"
	confDir = "/etc/zookeeper/conf"
)

// startTimeout bounds how long the JVM may take to serve (about 1 s idle).
const startTimeout = 60 * time.Second

// TickTime is the server's tick. ZooKeeper bounds the session timeouts its
// clients may ask for to 2 to 20 ticks: 1 s to 10 s here.
const TickTime = 500 * time.Millisecond

// Server is one ZooKeeper process and its directory, which outlives it.
type Server struct {
	// Process starts, kills, stops and restarts the server.
	*childproc.Process
	dir  string
	port int
}

// Program returns the java that runs ZooKeeper, or an error saying how to
// install what is missing.
func Program() (string, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return "", errors.New("java is not installed: apt-get install default-jre-headless")
	}
	if _, err := os.Stat(jar); err != nil {
		return "", errors.New("zookeeper is not installed: run `make test` as root (scripts/test-deps.sh installs Debian's zookeeper), or apt-get install zookeeper")
	}
	return java, nil
}

// Start starts a standalone ZooKeeper run by java in a new directory under
// parent and returns once it serves requests. It dies with this process.
func Start(ctx context.Context, java, parent string) (*Server, error) {
	var err error
	for range 3 { // the free port may be taken before the server binds it
		var s *Server
		if s, err = tryStart(ctx, java, parent); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func tryStart(ctx context.Context, java, parent string) (*Server, error) {
	ports, err := loopback.FreePorts(1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "zookeeper-")
	if err != nil {
		return nil, fmt.Errorf("zkserver: %w", err)
	}
	s := &Server{dir: dir, port: ports[0]}
	f, err := os.Create(filepath.Join(dir, "zoo.cfg"))
	if err != nil {
		return nil, fmt.Errorf("zkserver: %w", err)
	}
	err = errors.Join(configTemplate.Execute(f, map[string]any{"Dir": dir, "Port": s.port, "TickMs": TickTime.Milliseconds()}), f.Close())
	if err != nil {
		return nil, fmt.Errorf("zkserver: config: %w", err)
	}
	s.Process = childproc.New(childproc.Spec{
		Name: "zkserver: zookeeper on " + s.Addr(),
		Argv: []string{java, "-Xmx256m", "-Dzookeeper.log.dir=" + dir, "-Dzookeeper.root.logger=INFO,CONSOLE",
			"-cp", confDir + ":" + jar, "org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(dir, "zoo.cfg")},
		Dir:          dir,
		StartTimeout: startTimeout,
		Ready:        s.serving,
		LogTail:      s.logTail,
	})
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr returns the client address, host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Dir returns the server's directory: zoo.cfg, data/, stdout.log.
func (s *Server) Dir() string { return s.dir }

// serving asks the server for its status (the four-letter word srvr), which
// it answers with its version once it serves requests.
func (s *Server) serving(ctx context.Context) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "Zookeeper version:") {
		return fmt.Errorf("zkserver: %s answers %q (%v)", s.Addr(), line, err)
	}
	return nil
}

// logTail returns the end of the server's output, for a failure message.
func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "stdout.log"))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return "\n--- stdout.log:\n" + string(data)
}

// configTemplate is a standalone server on loopback: no admin HTTP server,
// the four-letter words the readiness probe uses, and sessions of 1 to 10 s.
// forceSync=no: the transaction log is written but not fsynced, which a
// server that only ever dies as a process (killed or stopped, never with
// the machine) does not need, and which costs every ON CLUSTER statement
// and every insert of the tests several fsyncs.
var configTemplate = template.Must(template.New("zoo.cfg").Parse(`tickTime={{.TickMs}}
dataDir={{.Dir}}/data
clientPort={{.Port}}
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
forceSync=no
`))
