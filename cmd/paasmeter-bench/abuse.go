package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/usage"
)

// abuseSpec is the load of the abuse benchmark.
type abuseSpec struct {
	Duration    time.Duration // of each phase
	Agents      int
	Batch       int           // records per agent batch
	Interval    time.Duration // between one agent's batches
	SeedMB      int           // log bytes stored for the attacker before the phases
	SlowPushes  int           // concurrent trickled pushes
	Trickle     time.Duration // between two bytes of a slow push
	Flooders    int           // concurrent stream floods
	FloodStream int           // new streams per flood push
	Readers     int           // concurrent large log reads
	// RefusalPause is how long an abuser waits after a 429 (0: it retries at once).
	RefusalPause time.Duration
	// CPUProfile, unless empty, is the file the attack phase's CPU profile goes to.
	CPUProfile string
	// InProcess runs the collector in the driver's process, as before the
	// child mode: for comparison only, the driver's CPU competes with it.
	InProcess bool
	// Program is the paasmeter binary whose collector runs as a child ("":
	// the one beside this program, else on PATH).
	Program string
	// CollectorCPUs and DriverCPUs are the CPUs (taskset lists) the child
	// collector and the driver are pinned to ("": not pinned).
	CollectorCPUs, DriverCPUs string
}

func (s abuseSpec) validate() error {
	if s.Duration <= 0 || s.Agents <= 0 || s.Batch <= 0 || s.Interval <= 0 || s.SeedMB < 0 ||
		s.SlowPushes < 0 || s.Trickle <= 0 || s.Flooders < 0 || s.FloodStream <= 0 || s.Readers < 0 || s.RefusalPause < 0 {
		return fmt.Errorf("abuse: duration (%s), agents (%d), batch (%d), interval (%s), trickle (%s) and flood-streams (%d) must be positive; seed-mb (%d), slow-pushes (%d), flooders (%d), readers (%d) and refusal-pause (%s) not negative",
			s.Duration, s.Agents, s.Batch, s.Interval, s.Trickle, s.FloodStream, s.SeedMB, s.SlowPushes, s.Flooders, s.Readers, s.RefusalPause)
	}
	return nil
}

// The two institutions: the agents ship the victim's usage, the attacker
// holds an institution token of its own.
const (
	abuseVictim   = "victim"
	abuseAttacker = "attacker"
)

// benchAbuseCmd measures what one institution's abuse costs every agent.
func (a *app) benchAbuseCmd() *cobra.Command {
	var spec abuseSpec
	cmd := &cobra.Command{
		Use:   "abuse",
		Short: "Agents' ingest latency quiet vs while one institution attacks the collector, and the collector's peak RSS",
		Long: `Store --seed-mb of log lines for the attacking institution straight into a
fresh embedded store, then start a collector on it with two institutions: by
default the 'paasmeter collector' of --paasmeter as a child process pinned
(taskset) to --collector-cpus while this driver is pinned to --driver-cpus, so
that the attacker's own client CPU does not compete with the collector; with
--in-process, in this process as before (for comparison). Then run two phases
of --duration each: agents (one goroutine and one node token each) post usage
batches at a steady rate, first alone (quiet), then while the attacking
institution, with its own token, trickles Loki pushes byte by byte
(reconnecting), floods pushes of new streams and runs parallel large log reads.

Prints the agents' batch latency (request to accepted answer, 429 retries
included) p50/p99 per phase, their errors and 429s, the attack's answers by
status, and the collector's CPU time and peak RSS: the child's (VmHWM), or
in-process this process's, where the driver's own allocations are kept small
(bodies are made as they are sent and answers discarded) and the peak is reset
(/proc/self/clear_refs) after the seeding.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := spec.validate(); err != nil {
				return err
			}
			return a.benchAbuse(cmd.Context(), spec)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&spec.Duration, "duration", 20*time.Second, "length of each phase (quiet, attack)")
	f.IntVar(&spec.Agents, "agents", 4, "agents, each with a node token of its own")
	f.IntVar(&spec.Batch, "batch", 200, "usage records per agent batch")
	f.DurationVar(&spec.Interval, "interval", 250*time.Millisecond, "time between one agent's batches")
	f.IntVar(&spec.SeedMB, "seed-mb", 200, "MB of the attacker's log lines stored before the phases")
	f.IntVar(&spec.SlowPushes, "slow-pushes", 4, "concurrent slow (trickled) Loki pushes (0: none)")
	f.DurationVar(&spec.Trickle, "trickle", 100*time.Millisecond, "time between two bytes of a slow push")
	f.IntVar(&spec.Flooders, "flooders", 1, "concurrent stream floods (0: none)")
	f.IntVar(&spec.FloodStream, "flood-streams", 1000, "new streams per flood push")
	f.IntVar(&spec.Readers, "readers", 4, "concurrent large log reads (0: none)")
	f.DurationVar(&spec.RefusalPause, "refusal-pause", 0, "how long an abuser waits after a 429 before it tries again (0: at once, the worst case)")
	f.StringVar(&spec.CPUProfile, "cpuprofile", "", "write the attack phase's CPU profile of this process (the driver; with --in-process the collector too) to this file")
	f.BoolVar(&spec.InProcess, "in-process", false, "run the collector in the driver's process (the driver's CPU then competes with it; for comparison)")
	f.StringVar(&spec.Program, "paasmeter", "", "the paasmeter binary whose collector runs as a child (default: paasmeter in this program's directory, else on PATH)")
	f.StringVar(&spec.CollectorCPUs, "collector-cpus", "0", "CPUs (taskset list) the child collector is pinned to (empty: not pinned)")
	f.StringVar(&spec.DriverCPUs, "driver-cpus", "1", "CPUs (taskset list) the driver is pinned to with a child collector (empty: not pinned)")
	return cmd
}

// abuseEnv is the collector under test and the tokens to reach it.
type abuseEnv struct {
	base          string // http://host:port
	agentTokens   []string
	attackerToken string
}

func (s abuseSpec) node(i int) string { return fmt.Sprintf("abuse-node-%02d", i) }

// startInProcessCollector stores the attacker's logs in a store in dataDir
// and runs a collector over it on loopback in this process; the peak RSS
// counts from after the seeding (resetPeak says whether it could be reset).
func startInProcessCollector(ctx context.Context, spec abuseSpec, dataDir string, now time.Time, progress io.Writer) (col *abuseCollector, resetPeak error, err error) {
	store, err := embedded.Open(ctx, dataDir)
	if err != nil {
		return nil, nil, err
	}
	seeded, err := seedAttackerLogs(ctx, store, spec.SeedMB, now)
	if err != nil {
		return nil, nil, errors.Join(err, store.Close())
	}
	fmt.Fprintf(progress, "seeded %d log lines in %s\n", seeded, time.Since(now).Round(time.Millisecond))
	// The peak counts from here: the seeding's garbage is returned and the
	// high-water mark reset (Linux ≥ 4.0; if refused, the peak includes the seeding).
	debug.FreeOSMemory()
	resetPeak = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	env, tokens := abuseTokens(spec)
	stop, base, err := runCollector(ctx, store, nil, tokens, []string{abuseVictim, abuseAttacker})
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("abuse collector: %w", err), store.Close())
	}
	env.base = base
	return &abuseCollector{env: env, pid: os.Getpid(), stop: func() error { stop(); return store.Close() }}, resetPeak, nil
}

// startAbuseCollector seeds the attacker's logs and starts the collector in
// the spec's mode; mode names it for the report.
func startAbuseCollector(ctx context.Context, spec abuseSpec, dir string, now time.Time, progress io.Writer) (col *abuseCollector, mode string, resetPeak error, err error) {
	dataDir := filepath.Join(dir, "data")
	if spec.InProcess {
		col, resetPeak, err = startInProcessCollector(ctx, spec, dataDir, now, progress)
		return col, "in the driver's process (the driver's CPU competes with it)", resetPeak, err
	}
	seeded, err := seedChildStore(ctx, dataDir, spec.SeedMB, now)
	if err != nil {
		return nil, "", nil, err
	}
	fmt.Fprintf(progress, "seeded %d log lines in %s\n", seeded, time.Since(now).Round(time.Millisecond))
	if col, err = startChildCollector(ctx, spec, dir, dataDir, progress); err != nil {
		return nil, "", nil, err
	}
	if err := pinSelf(ctx, spec.DriverCPUs); err != nil {
		return nil, "", nil, errors.Join(err, col.stop())
	}
	mode = fmt.Sprintf("a child process 'paasmeter collector' (pid %d) on CPUs %s, the driver on CPUs %s", col.pid, orAll(spec.CollectorCPUs), orAll(spec.DriverCPUs))
	return col, mode, nil, nil
}

func orAll(cpus string) string {
	if cpus == "" {
		return "all (not pinned)"
	}
	return cpus
}

// seedAttackerLogs stores about mb MB of the attacker's log lines, 1 KiB each
// over 8 streams in the last 50 minutes (inside a log read's default hour),
// in chunks so that the driver never holds more than one.
func seedAttackerLogs(ctx context.Context, store metering.LogAppender, mb int, now time.Time) (int, error) {
	const lineBytes, chunk = 1024, 5000
	total := mb * 1_000_000 / lineBytes
	text := strings.Repeat("x", lineBytes-32)
	for lo := 0; lo < total; lo += chunk {
		lines := make([]logs.Line, min(chunk, total-lo))
		for i := range lines {
			n := lo + i
			l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: abuseAttacker,
				Labels: map[string]string{logs.LabelApp: "noisy", logs.LabelEnv: "prod", logs.LabelContainer: fmt.Sprintf("c%d", n%8)},
				Time:   now.Add(-50 * time.Minute).Add(time.Duration(n) * 50 * time.Minute / time.Duration(total)),
				Line:   fmt.Sprintf("%09d ", n) + text, ReceivedAt: now}
			l.SetID()
			lines[i] = l
		}
		if _, err := store.AppendLogs(ctx, lines); err != nil {
			return 0, fmt.Errorf("seed the attacker's logs: %w", err)
		}
	}
	return total, nil
}

// agentStats is what the agents saw in one phase.
type agentStats struct {
	mu        sync.Mutex
	latencies []time.Duration // per batch, from first try to accepted answer
	batches   int             // started
	ok        int             // accepted
	errors    int             // transport errors and answers other than 200/429/503
	throttled int             // 429 and 503 answers (retried)
}

func (s *agentStats) quantile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

// runAgents ships usage from every agent, one batch per interval, until
// phase is done; batches under way then still finish (under ctx), as an
// agent's would. next hands out record numbers so that no two batches repeat.
func runAgents(ctx, phase context.Context, env abuseEnv, spec abuseSpec, gens []func(int) usage.Record, next []int, st *agentStats) {
	var wg sync.WaitGroup
	for i := range spec.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			tick := time.NewTicker(spec.Interval)
			defer tick.Stop()
			for {
				select {
				case <-phase.Done():
					return
				case <-tick.C:
				}
				b := make([]usage.Record, spec.Batch)
				for j := range b {
					b[j] = gens[i](next[i] + j)
				}
				next[i] += spec.Batch
				var body bytes.Buffer
				if err := usage.EncodeBatch(&body, b); err != nil {
					st.mu.Lock()
					st.errors++
					st.mu.Unlock()
					continue
				}
				st.mu.Lock()
				st.batches++
				st.mu.Unlock()
				shipBatch(ctx, client, env.base+"/api/v1/usage", env.agentTokens[i], body.Bytes(), st)
			}
		}()
	}
	wg.Wait()
}

// shipBatch posts one batch until it is accepted, retrying 429 and 503 after
// a short pause as the agent does, and records the outcome in st.
func shipBatch(ctx context.Context, client *http.Client, url, token string, body []byte, st *agentStats) {
	start := time.Now()
	for {
		code, err := post(ctx, client, url, token, "application/json", bytes.NewReader(body), nil)
		st.mu.Lock()
		switch {
		case err == nil && code == http.StatusOK:
			st.ok++
			st.latencies = append(st.latencies, time.Since(start))
			st.mu.Unlock()
			return
		case err == nil && (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable):
			st.throttled++
			st.mu.Unlock()
		default:
			st.errors++
			st.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// post sends one request and discards the answer's body; header adds headers.
func post(ctx context.Context, client *http.Client, url, token, contentType string, body io.Reader, header map[string]string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return doDiscard(client, req)
}

func doDiscard(client *http.Client, req *http.Request) (int, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

// attackStats counts the attack's answers by kind and status ("error" for a
// transport error).
type attackStats struct {
	mu     sync.Mutex
	counts map[string]map[string]int
}

func (s *attackStats) add(kind string, code int, err error) {
	status := strconv.Itoa(code)
	if err != nil {
		status = "error"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[kind] == nil {
		s.counts[kind] = map[string]int{}
	}
	s.counts[kind][status]++
}

// trickle is a request body that hands out one byte per call, delay apart.
type trickle struct {
	ctx   context.Context
	body  []byte
	delay time.Duration
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.body) == 0 {
		return 0, io.EOF
	}
	select {
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	case <-time.After(t.delay):
	}
	p[0] = t.body[0]
	t.body = t.body[1:]
	return 1, nil
}

// lokiJSON is a Loki JSON push of one line per stream, streams labelled
// container=<prefix><i>. It is appended by hand, not marshalled: the driver
// shares the cores with the collector, and a flood answered 429 at once
// would otherwise spend more CPU making its pushes than the collector
// refusing them (prefix is a plain name: nothing to escape).
func lokiJSON(prefix string, streams int, at time.Time) []byte {
	ns := strconv.FormatInt(at.UnixNano(), 10)
	b := make([]byte, 0, streams*(64+len(prefix)+len(ns))+16)
	b = append(b, `{"streams":[`...)
	for i := range streams {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"stream":{"`+logs.LabelApp+`":"flood","`+logs.LabelContainer+`":"`...)
		b = append(b, prefix...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `"},"values":[["`...)
		b = append(b, ns...)
		b = append(b, `","flood line"]]}`...)
	}
	return append(b, "]}"...)
}

// attack runs the attacker's three abuses until phase is done. After a
// refusal (429) an abuser waits spec.RefusalPause before it tries again.
func attack(phase context.Context, env abuseEnv, spec abuseSpec, st *attackStats) {
	push := env.base + "/loki/api/v1/push"
	org := map[string]string{"X-Scope-OrgID": abuseAttacker}
	var wg sync.WaitGroup
	// Each abuser has its own client: a trickled push holds its connection.
	var clients []*http.Client
	loop := func(kind string, n int, do func(c *http.Client, i, round int) (int, error)) {
		for i := range n {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			clients = append(clients, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := 0; phase.Err() == nil; round++ {
					code, err := do(c, i, round)
					if phase.Err() != nil {
						return // cut off by the phase's end, not answered
					}
					st.add(kind, code, err)
					if code == http.StatusTooManyRequests && spec.RefusalPause > 0 {
						select {
						case <-phase.Done():
						case <-time.After(spec.RefusalPause):
						}
					}
				}
			}()
		}
	}
	loop("slow push", spec.SlowPushes, func(c *http.Client, i, round int) (int, error) {
		body := &trickle{ctx: phase, body: lokiJSON(fmt.Sprintf("slow%d-%d-", i, round), 1, time.Now()), delay: spec.Trickle}
		return post(phase, c, push, env.attackerToken, "application/json", body, org)
	})
	loop("stream flood", spec.Flooders, func(c *http.Client, i, round int) (int, error) {
		return post(phase, c, push, env.attackerToken, "application/json",
			bytes.NewReader(lokiJSON(fmt.Sprintf("flood%d-%d-", i, round), spec.FloodStream, time.Now())), org)
	})
	read := fmt.Sprintf("%s/api/v1/tenants/%s/logs?limit=%d", env.base, abuseAttacker, metering.MaxLogLimit)
	loop("large read", spec.Readers, func(c *http.Client, _, _ int) (int, error) {
		req, err := http.NewRequestWithContext(phase, http.MethodGet, read, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+env.attackerToken)
		return doDiscard(c, req)
	})
	wg.Wait()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
}

func (a *app) benchAbuse(ctx context.Context, spec abuseSpec) error {
	fmt.Fprintf(a.stdout, "abuse benchmark: %d agents × %d records every %s, phases of %s; attacker: %d MB of logs, %d slow pushes (a byte every %s), %d floods of %d streams a push, %d readers of %d lines, pause after a 429: %s; GOMAXPROCS=%d\n",
		spec.Agents, spec.Batch, spec.Interval, spec.Duration, spec.SeedMB, spec.SlowPushes, spec.Trickle, spec.Flooders, spec.FloodStream, spec.Readers, metering.MaxLogLimit, spec.RefusalPause, runtime.GOMAXPROCS(0))
	dir, err := os.MkdirTemp("", "paasmeter-bench-abuse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	start := time.Now()
	col, mode, resetPeak, err := startAbuseCollector(ctx, spec, dir, start.UTC(), a.stderr)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			col.stop()
		}
	}()
	fmt.Fprintf(a.stdout, "collector: %s\n", mode)
	env := col.env

	gens := make([]func(int) usage.Record, spec.Agents)
	for i := range gens {
		gens[i] = loadgen.Spec{Tenant: abuseVictim, Node: spec.node(i), End: start}.Generator()
	}
	next := make([]int, spec.Agents)
	var quiet, attacked agentStats
	cpu := map[*agentStats]time.Duration{}
	phase := func(st *agentStats, during func(context.Context)) {
		pctx, cancel := context.WithTimeout(ctx, spec.Duration)
		defer cancel()
		// The work a phase made, beside its latency: on a shared machine the
		// process gets what the other load leaves, and an attacker that
		// retries at once takes all of it, so compare runs made close together.
		from := processCPU(col.pid)
		defer func() { cpu[st] = processCPU(col.pid) - from }()
		var wg sync.WaitGroup
		if during != nil {
			wg.Add(1)
			go func() { defer wg.Done(); during(pctx) }()
		}
		runAgents(ctx, pctx, env, spec, gens, next, st)
		wg.Wait()
	}
	phase(&quiet, nil)
	att := attackStats{counts: map[string]map[string]int{}}
	stopProfile, err := startCPUProfile(spec.CPUProfile)
	if err != nil {
		return err
	}
	phase(&attacked, func(pctx context.Context) { attack(pctx, env, spec, &att) })
	if err := stopProfile(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Read before the stop: a child's VmHWM goes with its process.
	peak, err := peakRSS(col.pid)
	if err != nil {
		return err
	}
	stopped = true
	if err := col.stop(); err != nil {
		return fmt.Errorf("stop the collector: %w", err)
	}

	fmt.Fprintf(a.stdout, "%-8s %8s %8s %7s %6s %10s %10s\n", "agents", "batches", "ok", "errors", "429s", "p50", "p99")
	for _, r := range []struct {
		name string
		st   *agentStats
	}{{"quiet", &quiet}, {"attack", &attacked}} {
		fmt.Fprintf(a.stdout, "%-8s %8d %8d %7d %6d %10s %10s\n", r.name, r.st.batches, r.st.ok, r.st.errors, r.st.throttled,
			r.st.quantile(0.5).Round(10*time.Microsecond), r.st.quantile(0.99).Round(10*time.Microsecond))
	}
	for _, kind := range []string{"slow push", "stream flood", "large read"} {
		var parts []string
		for _, status := range slices.Sorted(maps.Keys(att.counts[kind])) {
			parts = append(parts, fmt.Sprintf("%s×%d", status, att.counts[kind][status]))
		}
		if len(parts) == 0 {
			parts = []string{"(none)"}
		}
		fmt.Fprintf(a.stdout, "attack %-13s %s\n", kind+":", strings.Join(parts, " "))
	}
	who := "the child collector's"
	if spec.InProcess {
		who = "collector and driver"
	}
	fmt.Fprintf(a.stdout, "process CPU (%s): quiet %.2f s, attack %.2f s\n", who, cpu[&quiet].Seconds(), cpu[&attacked].Seconds())
	peakNote := ""
	if resetPeak != nil {
		peakNote = " (the seeding included: the peak could not be reset)"
	}
	fmt.Fprintf(a.stdout, "peak RSS: %.1f MiB%s\n", float64(peak)/(1<<20), peakNote)
	qp99, ap99 := quiet.quantile(0.99), attacked.quantile(0.99)
	fmt.Fprintf(a.stdout, "aim agents' p99 under attack ≤ 2× quiet (%s ≤ %s): %s\n", ap99.Round(10*time.Microsecond), (2 * qp99).Round(10*time.Microsecond), met(ap99 <= 2*qp99))
	fmt.Fprintf(a.stdout, "aim peak RSS < 512 MiB: %s\n", met(peak < 512<<20))
	fmt.Fprintf(a.stdout, "load average (1 min) at the end: %s\n", loadAverage())
	if failed := quiet.errors + attacked.errors + quiet.batches - quiet.ok + attacked.batches - attacked.ok; failed > 0 {
		return fmt.Errorf("abuse: %d agent batches were not accepted", failed)
	}
	return nil
}

// startCPUProfile starts a CPU profile into path, unless path is empty;
// stop ends it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
