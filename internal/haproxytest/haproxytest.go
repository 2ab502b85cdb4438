// Package haproxytest runs a private HAProxy (Debian's haproxy, which
// scripts/test-deps.sh installs) for tests: one process on a free loopback
// port in front of the backends a test names, with a configuration generated
// here that balances them as deploy/ha/haproxy.cfg does (TCP passthrough,
// health checks on /readyz, a failed connection sent to another backend; round
// robin where the example has leastconn, so that a test's few connections
// reach every backend),
// and its directory in the test's temporary one. The process dies with the
// test binary. Without haproxy installed the test fails under CI=true and is
// skipped elsewhere, saying how to get it.
package haproxytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/paasmeter/paasmeter/internal/loopback"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// debian is where Debian's package puts haproxy, which is not on every
// user's PATH.
const debian = "/usr/sbin/haproxy"

// startTimeout bounds how long HAProxy may take to listen (milliseconds on
// an idle machine).
const startTimeout = 30 * time.Second

// Proxy is a running HAProxy.
type Proxy struct {
	// Addr is the frontend's address, host:port.
	Addr string
	// Config is the configuration file it runs.
	Config string
}

// URL returns the frontend's base URL.
func (p *Proxy) URL() string { return "http://" + p.Addr }

// config is the HAProxy configuration for the backends: the policy of
// deploy/ha/haproxy.cfg on loopback, without TLS (the tests' collectors
// listen on loopback in plain HTTP). A backend is checked every 200 ms and
// out after two failed checks; until then a refused connection is retried
// on another backend (redispatch), and an answer that never comes is the
// agent's to retry.
var config = template.Must(template.New("haproxy.cfg").Parse(`global
    maxconn 4096

defaults
    mode tcp
    timeout connect 1s
    timeout client 2m
    timeout server 2m
    timeout check 1s
    retries 2
    option redispatch

frontend collectors
    bind {{.Frontend}}
    default_backend collectors

backend collectors
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
{{- range $i, $b := .Backends}}
    server collector-{{$i}} {{$b}} check
{{- end}}
`))

// Start runs HAProxy in front of backends (host:port each) until t ends.
func Start(t testing.TB, backends ...string) *Proxy {
	t.Helper()
	program, err := Program()
	if err != nil {
		testenv.Missing(t, err)
	}
	ports, err := loopback.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &Proxy{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Config: filepath.Join(dir, "haproxy.cfg")}
	var cfg bytes.Buffer
	if err := config.Execute(&cfg, map[string]any{"Frontend": p.Addr, "Backends": backends}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Config, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(program, "-c", "-f", p.Config).CombinedOutput(); err != nil {
		t.Fatalf("haproxytest: the generated configuration is refused: %v\n%s\n%s", err, out, cfg.Bytes())
	}
	logPath := filepath.Join(dir, "haproxy.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	// -db: in the foreground, so the process is the one Pdeathsig kills.
	cmd := exec.Command(program, "-db", "-f", p.Config)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("haproxytest: start %s: %v", program, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("haproxytest: haproxy exited at start:\n%s", out)
		default:
		}
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxytest: haproxy does not listen on %s within %s: %v", p.Addr, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polled, until the deadline
	}
}

// Program finds haproxy: on PATH, or where Debian puts it.
func Program() (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(debian); err != nil {
		return "", errors.New("haproxy is not installed: run `make test` as root (scripts/test-deps.sh installs Debian's haproxy), or apt-get install haproxy")
	}
	return debian, nil
}
