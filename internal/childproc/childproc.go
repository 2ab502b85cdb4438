// Package childproc runs a throwaway server as a child process for tests and
// benchmarks: started in a directory of its own with its output appended to a
// log there, ready once a probe answers, and killed (SIGKILL), stopped
// (SIGTERM) or restarted on the same directory at will. The child dies with
// the process that started it, even when that one is killed.
//
// The ClickHouse (metering/clickhouse/chserver) and ZooKeeper
// (metering/clickhouse/zkserver) launchers are built on it.
package childproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Process is one server process and the directory it runs in, which
// outlives it: Kill and Restart keep what the server wrote there.
type Process struct {
	name    string
	argv    []string
	dir     string
	timeout time.Duration
	ready   func(ctx context.Context) error
	logTail func() string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Spec says how to run a server.
type Spec struct {
	// Name names the server in errors, e.g. "clickhouse-server on 127.0.0.1:9000".
	Name string
	// Argv is the program and its arguments.
	Argv []string
	// Dir is the server's working directory; its output goes to Dir/stdout.log.
	Dir string
	// StartTimeout bounds how long the server may take to answer after it starts.
	StartTimeout time.Duration
	// Ready reports whether the server answers; it is polled after each start.
	Ready func(ctx context.Context) error
	// LogTail returns what of the server's logs explains a failed start.
	LogTail func() string
}

// New returns the process spec describes, not started.
func New(spec Spec) *Process {
	return &Process{name: spec.Name, argv: spec.Argv, dir: spec.Dir, timeout: spec.StartTimeout, ready: spec.Ready, logTail: spec.LogTail}
}

// Pid returns the server's process id, 0 when it is not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the server's process was started and not killed
// or stopped since.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Kill sends SIGKILL to the server and waits until it is gone: what a crash
// or an OOM kill does. Its directory stays for Restart.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.exited
	p.cmd = nil
	return nil
}

// Stop asks the server to shut down (SIGTERM) and waits until it did, or
// kills it when ctx ends first. Its directory stays.
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
	return nil
}

// Restart starts the server again on the same directory after Kill or Stop,
// and returns once it answers. A running server is killed first.
func (p *Process) Restart(ctx context.Context) error {
	if err := p.Kill(); err != nil {
		return err
	}
	return p.Start(ctx)
}

// Start runs the server and waits until it answers. It refuses to start a
// second one while the first runs: that one would be left untracked.
func (p *Process) Start(ctx context.Context) error {
	if p.Running() {
		return fmt.Errorf("start %s: it runs already (Restart kills it first)", p.name)
	}
	out, err := os.OpenFile(filepath.Join(p.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = p.dir, out, out
	// Pdeathsig: a process that dies (a test's panic or -timeout, a killed
	// benchmark) takes its servers with it instead of leaving them running.
	// The kernel sends it when the thread that started the child ends, which
	// for a Go program is at its exit unless that thread was locked and left.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	for {
		select {
		case <-exited:
			p.mu.Lock()
			p.cmd = nil
			p.mu.Unlock()
			return fmt.Errorf("%s exited at start: %s", p.name, p.logTail())
		case <-ctx.Done():
			p.Kill()
			return fmt.Errorf("%s did not answer within %s: %w; %s", p.name, p.timeout, ctx.Err(), p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if p.ready(ctx) == nil {
			return nil
		}
	}
}
