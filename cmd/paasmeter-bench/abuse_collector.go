package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/internal/loopback"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// abuseCollector is the collector under test, in whichever mode it runs.
type abuseCollector struct {
	env abuseEnv
	// pid is the process whose CPU time and peak RSS are the collector's:
	// the driver's own in-process, the child's otherwise.
	pid  int
	stop func() error
}

// abuseTokens makes an agent token per agent, bound to the victim whose
// usage it ships, and the attacker's institution token.
func abuseTokens(spec abuseSpec) (env abuseEnv, tokens []auth.TokenConfig) {
	for i := range spec.Agents {
		t := auth.New()
		env.agentTokens = append(env.agentTokens, t)
		tokens = append(tokens, auth.TokenConfig{Name: spec.node(i), Role: auth.RoleAgent, Node: spec.node(i), Tenants: []string{abuseVictim}, SHA256: auth.Hash(t)})
	}
	env.attackerToken = auth.New()
	tokens = append(tokens, auth.TokenConfig{Name: abuseAttacker, Role: auth.RoleInstitution, Tenant: abuseAttacker, SHA256: auth.Hash(env.attackerToken)})
	return env, tokens
}

// paasmeterProgram is the paasmeter binary to run: program if set, else the
// paasmeter beside this program (bin/paasmeter after make bench), else the
// one on PATH.
func paasmeterProgram(program string) (string, error) {
	if program != "" {
		if _, err := os.Stat(program); err != nil {
			return "", fmt.Errorf("the paasmeter binary (--paasmeter): %w", err)
		}
		return program, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "paasmeter")
		if _, err := os.Stat(beside); err == nil {
			return beside, nil
		}
	}
	p, err := exec.LookPath("paasmeter")
	if err != nil {
		return "", fmt.Errorf("no paasmeter binary beside this program nor on PATH (build it, or give --paasmeter): %w", err)
	}
	return p, nil
}

// startChildCollector runs `paasmeter collector` as a child process pinned
// to spec.CollectorCPUs, on a configuration written into dir whose embedded
// store is dataDir (seeded before: the child opens it as a deployment would),
// and waits until it answers /readyz.
func startChildCollector(ctx context.Context, spec abuseSpec, dir, dataDir string, stderr io.Writer) (*abuseCollector, error) {
	program, err := paasmeterProgram(spec.Program)
	if err != nil {
		return nil, err
	}
	env, tokens := abuseTokens(spec)
	// Found together, so that the two listeners differ.
	ports, err := loopback.FreePorts(2)
	if err != nil {
		return nil, err
	}
	api, admin := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	env.base = "http://" + api
	cfg, err := yaml.Marshal(map[string]any{
		"log":       map[string]string{"level": "error"},
		"store":     map[string]string{"data_dir": dataDir},
		"collector": map[string]string{"listen": api, "admin_listen": admin},
		"tenants":   []map[string]string{{"id": abuseVictim}, {"id": abuseAttacker}},
		"tokens":    tokens,
	})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	args := []string{program, "collector", "--config", cfgPath}
	if spec.CollectorCPUs != "" {
		args = append([]string{"taskset", "-c", spec.CollectorCPUs}, args...)
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(cctx, args[0], args[1:]...)
	// A drain, as an operator's stop would; killed if it takes too long.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	// A driver killed with -9 cannot stop it: the kernel does (the signal
	// survives taskset's exec of the collector).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The driver's environment must not override the written configuration.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAASMETER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", strings.Join(args, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		cancel()
		// A collector that drained and exited 0 reports the cancel only.
		if err := <-exited; !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	// taskset execs the collector in its own process: the child's pid is the collector's.
	col := &abuseCollector{env: env, pid: cmd.Process.Pid, stop: stop}
	if err := waitReady(ctx, env.base, exited); err != nil {
		return nil, errors.Join(err, stop())
	}
	return col, nil
}

// waitReady polls base/readyz until it answers 200, the child exits or a
// minute passes (opening a large seeded store takes a while).
func waitReady(ctx context.Context, base string, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return err
		}
		code, err := doDiscard(client, req)
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("/readyz answered %d", code)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the collector exited before it was ready: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("the collector is not ready: %w", errors.Join(ctx.Err(), last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pinSelf pins every thread of this process to cpus (taskset's list syntax),
// so that the driver leaves the collector's core alone.
func pinSelf(ctx context.Context, cpus string) error {
	if cpus == "" {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		return fmt.Errorf("pin the driver to CPUs %s: %w: %s", cpus, err, out)
	}
	return nil
}

// seedChildStore stores the attacker's log lines in the embedded store at
// dataDir and closes it, before the child collector opens it.
func seedChildStore(ctx context.Context, dataDir string, mb int, now time.Time) (int, error) {
	store, err := embedded.Open(ctx, dataDir)
	if err != nil {
		return 0, err
	}
	n, err := seedAttackerLogs(ctx, store, mb, now)
	return n, errors.Join(err, store.Close())
}
