// Package pgtest runs a private PostgreSQL cluster for the tests of one test
// binary: initdb into a temporary directory (in memory where the machine has
// /dev/shm), then postgres on a free loopback port with its unix socket in
// that directory, started on first use and stopped when the binary's tests
// end. Each test gets a database of its own.
//
// A package that uses it stops the cluster when its tests end by calling Main
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// PostgreSQL refuses to run as root: as root, initdb and postgres run as the
// postgres user (which Debian's package creates), in a directory it owns.
// The cluster trades durability for speed (fsync off): it is thrown away.
//
// A test that stops PostgreSQL under its clients (a fault test) takes a
// server of its own with Private instead, and stops and starts it again.
// Without PostgreSQL installed, a test that asks for a database fails under
// CI=true and is skipped elsewhere, saying how to get it.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paasmeter/paasmeter/internal/loopback"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// debianBin is where Debian's postgresql-15 puts initdb and postgres, which
// are not on PATH there.
const debianBin = "/usr/lib/postgresql/15/bin"

// startTimeout bounds how long the cluster may take to accept connections
// after postgres starts (well under a second on an idle machine).
const startTimeout = 30 * time.Second

// cluster is one postgres process and its directory.
type cluster struct {
	dir  string
	port int
	// bin and cred are how postgres was run, to run it again (Server.Start).
	bin  string
	cred *syscall.Credential

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	admin  *pgxpool.Pool // creates and drops the tests' databases
}

// dsn returns the DSN of database db on c.
func (c *cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// shared holds the cluster the tests of this binary share.
var shared struct {
	mu         sync.Mutex
	mainCalled bool
	c          *cluster
	// err is a failed start, kept so that every test fails with its reason.
	err error
}

// Main runs the tests and then stops the cluster they shared and removes its
// directory. Use it in TestMain: os.Exit(pgtest.Main(m)). m is a
// *testing.M, or what runs it through another helper's Main first (a
// package that also needs chtest's servers).
func Main(m interface{ Run() int }) int {
	shared.mu.Lock()
	shared.mainCalled = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if c := shared.c; c != nil {
		if err := c.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return code
}

// DSN creates a database of its own for t, dropped when t ends, on the
// cluster of this test binary (started on first use), and returns its DSN.
func DSN(t testing.TB) string {
	t.Helper()
	c := sharedCluster(t)
	db := fmt.Sprintf("test_%d_%s", dbSeq.Add(1), identifier(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// FILE_COPY copies template1's files instead of writing them through the
	// WAL (PostgreSQL 15's default): faster for a database this small.
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" STRATEGY = FILE_COPY"); err != nil {
		t.Fatalf("pgtest: create database %s: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE: a test that failed may have left connections open.
		if _, err := c.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", db, err)
		}
	})
	return c.dsn(db)
}

var dbSeq atomic.Int64

var notIdent = regexp.MustCompile(`[^a-z0-9]+`)

// identifier turns a test name into a short database name suffix: names are
// at most 63 bytes, and a readable one helps when a test leaves a database.
func identifier(name string) string {
	s := strings.Trim(notIdent.ReplaceAllString(strings.ToLower(name), "_"), "_")
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

func sharedCluster(t testing.TB) *cluster {
	t.Helper()
	require(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.mainCalled {
		t.Fatal("pgtest: call pgtest.Main from TestMain, which stops the cluster when the tests end")
	}
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start(context.Background())
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

// require fails t under CI=true and skips it elsewhere when PostgreSQL is
// not installed.
func require(t testing.TB) {
	t.Helper()
	if _, err := binDir(); err != nil {
		testenv.Missing(t, err)
	}
}

// binDir finds the directory of initdb and postgres: Debian's, or that of
// an initdb on PATH (following its symlink to where postgres lives too).
func binDir() (string, error) {
	dirs := []string{debianBin}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed: run `make test` as root (scripts/test-deps.sh installs Debian's postgresql), or apt-get install postgresql")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// runAs returns the credentials to run PostgreSQL with: the postgres user's
// when this process is root (PostgreSQL refuses root), nil (this process's)
// otherwise.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses root: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// command returns bin of PostgreSQL's dir run with args as cred, in dir,
// with an environment free of the PG* variables that would redirect it.
func command(bin string, cred *syscall.Credential, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	// Pdeathsig: a test binary that dies (a panic, a -timeout) takes its
	// cluster with it. SIGQUIT is postgres' immediate shutdown, which also
	// ends its backends and releases its shared memory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT, Credential: cred}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	return cmd
}

// start creates a cluster in a new temporary directory and starts it. A free
// port found here may be taken by another process before postgres binds it
// (the tests of several packages start clusters at once): it tries again.
func start(ctx context.Context) (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: give %s to the postgres user: %w", dir, err)
		}
	}
	// --no-sync and no locale keep initdb at well under a second.
	initdb := command(filepath.Join(bin, "initdb"), cred, dir, "--pgdata="+filepath.Join(dir, "data"),
		"--username=postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb in %s: %w\n%s", dir, err, out)
	}
	for attempt := 1; ; attempt++ {
		ports, err := loopback.FreePorts(1)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		c, err := run(ctx, bin, cred, dir, ports[0])
		if err == nil {
			return c, nil
		}
		if attempt == 3 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// dirPrefix names the clusters' directories, so that sweep finds them.
const dirPrefix = "paasmeter-postgres-"

// ownerFile in a cluster's directory holds the pid of the test binary that owns it.
const ownerFile = "owner.pid"

// tempDir creates the cluster's directory in memory (/dev/shm) where there
// is one: on a busy disk, CREATE DATABASE took 0.3–0.5 s there against 20–50 ms
// in memory, even with fsync off. Main removes it when the tests end.
func tempDir() (string, error) {
	parent := "/dev/shm"
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		parent = os.TempDir()
	}
	sweep(parent)
	dir, err := os.MkdirTemp(parent, dirPrefix)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return dir, nil
}

// sweep removes the directories in parent of test binaries that died
// without cleaning up (a -timeout panics past Main): in /dev/shm they would
// hold memory until the machine reboots. A directory without an owner, or
// whose owner runs, is left alone.
func sweep(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil && pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// run starts postgres on the cluster in dir on port and waits until it
// accepts connections. The log is appended to: a restarted server's log
// follows the one before.
func run(ctx context.Context, bin string, cred *syscall.Credential, dir string, port int) (*cluster, error) {
	logPath := logFile(dir)
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer out.Close()
	cmd := command(filepath.Join(bin, "postgres"), cred, dir, "-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1",
		// A cluster thrown away after the tests needs no durability.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c := &cluster{dir: dir, port: port, bin: bin, cred: cred, cmd: cmd, exited: exited}

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("pgtest: postgres on port %d exited at start: %s", port, logTail(logPath))
		case <-ctx.Done():
			c.kill()
			return nil, fmt.Errorf("pgtest: postgres on port %d did not accept connections within %s: %w; %s", port, startTimeout, ctx.Err(), logTail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if c.admin, err = connect(ctx, c.dsn("postgres")); err == nil {
			return c, nil
		}
	}
}

// connect opens a small pool on dsn and checks that the server answers.
func connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 2
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// stop shuts postgres down (immediate shutdown: the data is thrown away),
// kills it if it lingers, and removes its directory.
func (c *cluster) stop() error {
	if c.admin != nil {
		c.admin.Close()
	}
	if err := c.cmd.Process.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres on port %d: %w", c.port, err)
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.kill()
	}
	return os.RemoveAll(c.dir)
}

// logFile is where postgres writes the log of the cluster in dir.
func logFile(dir string) string { return filepath.Join(dir, "postgres.log") }

// kill ends postgres and waits until it is gone.
func (c *cluster) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// logTail returns the end of the server's log, for a failure message.
func logTail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return "\n--- " + path + ":\n" + string(bytes.TrimSpace(data))
}
