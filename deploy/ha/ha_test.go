// Package ha_test checks the HA example of deploy/ha (two collectors on one
// ClickHouse and one PostgreSQL, behind HAProxy or listed in the agents'
// collector_urls) and runs it under faults: real collector processes of the
// paasmeter binary, configured from collector.yaml, over a chtest ClickHouse
// and a pgtest PostgreSQL, behind a private HAProxy (internal/haproxytest),
// with real shippers whose records are the ground truth.
//
// It needs clickhouse-server, PostgreSQL and haproxy, which `make test`
// installs: without them the tests fail under CI=true and are skipped
// elsewhere.
package ha_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/internal/haproxytest"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/spool/spooltest"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/postgres"
	"github.com/paasmeter/paasmeter/state/postgres/pgtest"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// The tests need ClickHouse and PostgreSQL: chtest's servers and pgtest's
// cluster, stopped when they end.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(withClickHouse{m})) }

type withClickHouse struct{ m *testing.M }

func (w withClickHouse) Run() int { return chtest.Main(w.m) }

// agentToken is the plain value of the example agent token collector.yaml
// holds the hash of (README.md's example tokens).
const agentToken = "pm_example_agent_node1"

func TestTheHAProxyExampleIsValid(t *testing.T) {
	program, err := haproxytest.Program()
	if err != nil {
		testenv.Missing(t, err)
	}
	out, err := exec.Command(program, "-c", "-f", "haproxy.cfg").CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c refuses haproxy.cfg: %v\n%s", err, out)
	}
	// The example's host names resolve nowhere here; any other warning is a mistake.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "WARNING") && !strings.Contains(line, "could not resolve address") {
			t.Errorf("haproxy -c: %s", line)
		}
	}
}

func TestTheCollectorAndAgentExamplesLoad(t *testing.T) {
	noEnv := func(string) string { return "" }
	c, err := config.Load("collector.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.MeteringDSN == "" || c.Store.StateDSN == "" || !c.Collector.TLS.Enabled() || c.Billing.RateCard == "" {
		t.Errorf("collector.yaml: want ClickHouse and PostgreSQL, TLS and billing, got %+v", c)
	}
	// The collectors' store is the replicated cluster of clickhouse/.
	if d, err := clickhouse.ParseDSN(c.Store.MeteringDSN); err != nil || d.Cluster != "paasmeter" || !d.Replicated || len(d.Options.Addr) != 4 {
		t.Errorf("collector.yaml: metering_dsn should name the four servers of clickhouse/config.d's replicated cluster paasmeter: %+v, %v", d, err)
	}
	a, err := config.Load("agent.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if urls := a.Agent.URLs(); len(urls) != 2 || !strings.HasPrefix(urls[0], "https:") {
		t.Errorf("agent.yaml: collectors %v, want two over https", urls)
	}
}

// TestThePostgreSQLSettingsAreKnown checks every setting of postgresql.conf
// against the installed PostgreSQL's own list (postgres --describe-config).
func TestThePostgreSQLSettingsAreKnown(t *testing.T) {
	bin := "/usr/lib/postgresql/15/bin/postgres"
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, "PostgreSQL 15 is not installed (apt-get install postgresql): ", err)
	}
	out, err := exec.Command(bin, "--describe-config").Output()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]string{} // name → type
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, "\t"); len(f) > 3 {
			known[f[0]] = f[3]
		}
	}
	f, err := os.Open("postgresql.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), "'")
		settings++
		typ, ok := known[name]
		switch {
		case !ok:
			t.Errorf("postgresql.conf: %s is not a PostgreSQL 15 setting", name)
		case typ == "BOOLEAN" && value != "on" && value != "off":
			t.Errorf("postgresql.conf: %s = %s, want on or off", name, value)
		}
	}
	if settings == 0 {
		t.Fatal("postgresql.conf sets nothing")
	}
}

// rateCard prices a production vCPU-hour from 2020 on, so that the records
// of any month two months back can be priced.
const rateCard = `currency: EUR
versions:
  - version: v1
    effective: 2020-01-01
    rates:
      - {meter: cpu, class: prod, basis: used, unit: vCPU-hour, price: "10.00"}
`

// collectorProc is one collector process of the real binary.
type collectorProc struct {
	name, cfg, api, admin, log string
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

// rig is the HA deployment of the example on loopback.
type rig struct {
	t                *testing.T
	bin              string
	meteringDSN      string
	stateDSN, period string
	periodStart      time.Time
	collectors       []*collectorProc
	proxy            *haproxytest.Proxy
	dir              string
}

// buildPaasmeter builds the binary into dir; done receives the build's
// error, so that ClickHouse and PostgreSQL start meanwhile.
func buildPaasmeter(dir string, done chan<- error) string {
	bin := filepath.Join(dir, "paasmeter")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/paasmeter")
	cmd.Dir = "../.."
	go func() {
		if out, err := cmd.CombinedOutput(); err != nil {
			done <- fmt.Errorf("build paasmeter: %w\n%s", err, out)
		}
		close(done)
	}()
	return bin
}

// collectorConfig is collector.yaml with this host's addresses, stores and
// files: every line replaced must be in the example, so that the test runs
// what the example says.
func (r *rig) collectorConfig(name string) (path, api, admin string) {
	t := r.t
	example, err := os.ReadFile("collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(r.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	api, admin = testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := string(example)
	for _, oldnew := range [][2]string{
		{"level: info", "level: warn"},
		{"data_dir: /var/lib/paasmeter", "data_dir: " + filepath.Join(dir, "data")},
		{"metering_dsn: clickhouse://ch1:9000,ch2:9000,ch3:9000,ch4:9000/paasmeter?cluster=paasmeter&replicated=true", "metering_dsn: " + r.meteringDSN},
		{"state_dsn: postgres://paasmeter@postgres.example:5432/paasmeter?sslmode=verify-full&sslrootcert=/etc/paasmeter/tls/servers-ca.pem", "state_dsn: " + r.stateDSN},
		// Plain HTTP on loopback: the tests' HAProxy has no certificates to check.
		{"listen: 0.0.0.0:8443", "listen: " + api},
		{"    cert_file: /etc/paasmeter/tls/collector.pem       # names collector.example and this host's name\n", ""},
		{"    key_file: /etc/paasmeter/tls/collector-key.pem\n", ""},
		{"  tls:\n", ""},
		{"admin_listen: 127.0.0.1:9090", "admin_listen: " + admin},
		{"rate_card: /etc/paasmeter/ratecard.yaml", "rate_card: " + filepath.Join(r.dir, "ratecard.yaml")},
		// The invoices bill what was received up to their issue: the test's
		// records arrive seconds before.
		{"cutoff_lag: 10m", "cutoff_lag: 0s"},
	} {
		if !strings.Contains(cfg, oldnew[0]) {
			t.Fatalf("collector.yaml no longer has %q: update the test with the example", oldnew[0])
		}
		cfg = strings.Replace(cfg, oldnew[0], oldnew[1], 1)
	}
	path = filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, api, admin
}

// start runs a collector and waits until it is ready.
func (r *rig) start(name string) *collectorProc {
	t := r.t
	cfg, api, admin := r.collectorConfig(name)
	c := &collectorProc{name: name, cfg: cfg, api: api, admin: admin, log: filepath.Join(r.dir, name, "collector.log"), exited: make(chan struct{})}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command(r.bin, "collector", "--config", cfg)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(c.log)
			t.Logf("log of %s:\n%s", name, tail(out, 4000))
		}
	})
	testenv.Eventually(t, time.Minute, name+" ready", func() error {
		select {
		case <-c.exited:
			out, _ := os.ReadFile(c.log)
			t.Fatalf("%s exited at start:\n%s", name, tail(out, 4000))
		default:
		}
		return ready("http://" + api)
	})
	r.collectors = append(r.collectors, c)
	return c
}

func tail(b []byte, n int) []byte { return b[max(0, len(b)-n):] }

// probe GETs url within a bound, so that a hung listener fails the
// condition polled rather than stalling the test.
func probe(url string) (*http.Response, error) {
	c := http.Client{Timeout: 5 * time.Second}
	return c.Get(url)
}

func ready(base string) error {
	resp, err := probe(base + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// kill SIGKILLs the collector: no drain, no lease released, a batch in
// flight lost with its connection.
func (c *collectorProc) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.exited
}

// shipper is one agent's spool and shipper, with the records it was given:
// the ground truth.
type shipper struct {
	name      string
	out, dead *spool.Spool
	sh        *ship.Shipper
	at        time.Time // the window of its first records

	mu   sync.Mutex
	sent []usage.Record
	acks []time.Time // when each batch left the spool
}

// add gives the agent its next n records: appended to its spool, as its
// collecting loop would, and to the ground truth.
func (s *shipper) add(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := make([][]byte, n)
	for k := range n {
		i := len(s.sent)
		rec := usagetest.Record([]string{"caami", "ona"}[i%2], fmt.Sprintf("%s-c%02d", s.name, i%40), usage.MeterCPU,
			s.at.Add(time.Duration(i/40)*time.Minute), int64(1_000_003*i+len(s.name)))
		rec.SetID()
		s.sent = append(s.sent, rec)
		var err error
		if data[k], err = json.Marshal(rec); err != nil {
			return err
		}
	}
	_, err := s.out.Append(ship.KindUsage, data...)
	return err
}

// given returns how many records the agent was given so far.
func (s *shipper) given() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// records returns the records the agent was given so far.
func (s *shipper) records() []usage.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// stall returns how long the agent went without an acknowledgement across
// the instant at: from its last one before to its first one after.
func (s *shipper) stall(at time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var before, after time.Time
	for _, a := range s.acks {
		switch {
		case !a.After(at):
			before = a
		case after.IsZero():
			after = a
		}
	}
	if before.IsZero() || after.IsZero() {
		return 0
	}
	return after.Sub(before)
}

// newShipper returns an agent shipping to urls, given no records yet: those
// of a week of the month two months back, over both institutions.
func (r *rig) newShipper(name string, urls []string) *shipper {
	t := r.t
	s := &shipper{name: name, at: r.periodStart.AddDate(0, 0, 7)}
	s.out, s.dead = spooltest.Pair(t)
	var err error
	s.sh, err = ship.New(ship.Options{Spool: s.out, Dead: s.dead, BaseURLs: urls, Token: agentToken,
		Client: &http.Client{Timeout: 30 * time.Second}, BatchSize: 250, MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second,
		Idle: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnAck: func(ship.Ack) {
			s.mu.Lock()
			s.acks = append(s.acks, time.Now())
			s.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newRig builds the binary and starts ClickHouse and PostgreSQL meanwhile:
// stateDSN returns the collectors' PostgreSQL database (pgtest.DSN, or a
// pgtest.Private server's).
func newRig(t *testing.T, stateDSN func(testing.TB) string) *rig {
	loc, err := time.LoadLocation("Europe/Brussels") // collector.yaml's time_zone
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(loc)
	periodStart := time.Date(now.Year(), now.Month()-2, 1, 0, 0, 0, 0, loc)
	built, binDir := make(chan error, 1), t.TempDir()
	// If the stores below end the test, the build must end before its
	// directory goes (cleanups run last first).
	t.Cleanup(func() { <-built })
	r := &rig{t: t, bin: buildPaasmeter(binDir, built), meteringDSN: chtest.Single(t).DSN(t), stateDSN: stateDSN(t), dir: t.TempDir(),
		periodStart: periodStart, period: periodStart.Format("2006-01")}
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "ratecard.yaml"), []byte(rateCard), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestACollectorKilledUnderLoadLosesAndDuplicatesNothing runs two collectors
// behind HAProxy, with two agents shipping through HAProxy and two listing
// both collectors, SIGKILLs one collector a third of the way through, and
// checks the store against the agents' records: each stored exactly once,
// every spool empty, no dead letter. Then an invoice run is started with
// each collector's configuration at once: each invoice is issued once.
func TestACollectorKilledUnderLoadLosesAndDuplicatesNothing(t *testing.T) {
	r := newRig(t, pgtest.DSN)
	a, _ := r.startCollectors()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const perAgent = 8000
	l := r.startLoad(ctx, perAgent)
	defer l.stop()

	total := len(l.agents) * perAgent
	testenv.Eventually(t, 2*time.Minute, "a third of the records delivered", func() error {
		if n := l.spooled(); n > total*2/3 {
			return fmt.Errorf("%d of %d records still spooled", n, total)
		}
		return nil
	})
	a.kill(t)
	killed := time.Now()
	spooled := l.spooled()
	l.waitDelivered(2*time.Minute, "every spool empty after the kill")
	t.Logf("collector-a killed with %d of %d records spooled; the agents delivered them through collector-b in %s", spooled, total, time.Since(killed).Round(10*time.Millisecond))
	l.stop()
	// What the kill cost each agent, for docs/clickhouse.md: its retry
	// delay is 200 ms to 1 s. Not asserted: this machine's load decides it.
	for _, s := range l.agents {
		t.Logf("%s: no acknowledgement for %s across the kill", s.name, s.stall(killed).Round(time.Millisecond))
	}

	l.checkNoDeadLetters()
	r.checkStoredOnce(ctx, l.agents)
	r.checkInvoicedOnce(ctx)
}

// startCollectors starts collector-a and collector-b behind HAProxy.
func (r *rig) startCollectors() (a, b *collectorProc) {
	a = r.start("collector-a")
	b = r.start("collector-b")
	r.proxy = haproxytest.Start(r.t, a.api, b.api)
	testenv.Eventually(r.t, 30*time.Second, "HAProxy routes to the collectors", func() error { return ready(r.proxy.URL()) })
	return a, b
}

// load is the four agents of the fault tests, shipping to the first two
// collectors: two through HAProxy, two listing both collectors.
type load struct {
	t        *testing.T
	agents   []*shipper
	stopOnce func()
}

// startLoad starts the four agents, each given perAgent records, until ctx
// ends or stop is called.
func (r *rig) startLoad(ctx context.Context, perAgent int) *load {
	direct := []string{"http://" + r.collectors[0].api, "http://" + r.collectors[1].api}
	l := &load{t: r.t, agents: []*shipper{
		r.newShipper("via-haproxy-1", []string{r.proxy.URL()}),
		r.newShipper("via-haproxy-2", []string{r.proxy.URL()}),
		r.newShipper("both-urls-1", direct),
		r.newShipper("both-urls-2", direct),
	}}
	for _, s := range l.agents {
		if err := s.add(perAgent); err != nil {
			r.t.Fatal(err)
		}
	}
	shipCtx, stopShipping := context.WithCancel(ctx)
	var shipping sync.WaitGroup
	for _, s := range l.agents {
		shipping.Go(func() { s.sh.Run(shipCtx) })
	}
	l.stopOnce = sync.OnceFunc(func() { stopShipping(); shipping.Wait() })
	return l
}

// stop stops the agents and waits until they stopped.
func (l *load) stop() { l.stopOnce() }

// spooled returns how many records the agents still hold.
func (l *load) spooled() int {
	var n uint64
	for _, s := range l.agents {
		n += s.out.Stats().Entries
	}
	return int(n)
}

// waitDelivered waits until every agent's spool is empty.
func (l *load) waitDelivered(within time.Duration, what string) {
	testenv.Eventually(l.t, within, what, func() error {
		if n := l.spooled(); n > 0 {
			return fmt.Errorf("%d records still spooled", n)
		}
		return nil
	})
}

// checkNoDeadLetters checks that no agent set a record aside.
func (l *load) checkNoDeadLetters() {
	for _, s := range l.agents {
		if n := s.dead.Stats().Entries; n != 0 {
			l.t.Errorf("%s: %d dead letters, want none", s.name, n)
		}
	}
}

// checkStoredOnce reads every record of the period back from ClickHouse:
// each one an agent sent, once, as sent, and nothing else.
func (r *rig) checkStoredOnce(ctx context.Context, agents []*shipper) {
	t := r.t
	st, err := clickhouse.Open(ctx, r.meteringDSN, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := map[string]usage.Record{}
	for _, s := range agents {
		for _, rec := range s.records() {
			want[rec.ID] = rec
		}
	}
	seen := map[string]int{}
	for _, tenant := range []string{"caami", "ona"} {
		err := st.ScanUsage(ctx, metering.UsageFilter{Tenant: tenant, From: r.periodStart, To: r.periodStart.AddDate(0, 1, 0)}, func(got usage.Record) error {
			seen[got.ID]++
			if w, ok := want[got.ID]; ok && (w.Quantity != got.Quantity || !w.WindowStart.Equal(got.WindowStart)) {
				t.Errorf("record %s stored with quantity %d at %s, sent with %d at %s", got.ID, got.Quantity, got.WindowStart, w.Quantity, w.WindowStart)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var missing, twice, unknown int
	for id := range want {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	for id := range seen {
		if _, ok := want[id]; !ok {
			unknown++
		}
	}
	if missing+twice+unknown > 0 {
		t.Errorf("of %d records sent, %d are missing, %d stored more than once; %d stored were never sent", len(want), missing, twice, unknown)
	}
}

// checkInvoicedOnce starts `paasmeter invoice issue` for the period with
// each collector's configuration at once, as a scheduler on each host
// would, and checks that each institution's invoice was issued once, with
// gap-free numbers.
func (r *rig) checkInvoicedOnce(ctx context.Context) {
	t := r.t
	type run struct {
		out bytes.Buffer
		err error
	}
	runs := make([]run, len(r.collectors))
	var wg sync.WaitGroup
	for i, c := range r.collectors {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, r.bin, "invoice", "issue", "--period", r.period, "--actor", c.name, "--config", c.cfg)
			cmd.Stdout, cmd.Stderr = &runs[i].out, &runs[i].out
			runs[i].err = cmd.Run()
		})
	}
	wg.Wait()
	issued := map[string]int{}
	for i, run := range runs {
		t.Logf("invoice run with %s's configuration: %v\n%s", r.collectors[i].name, run.err, run.out.String())
		if run.err != nil {
			t.Errorf("invoice run with %s's configuration failed: %v", r.collectors[i].name, run.err)
		}
		for _, line := range strings.Split(run.out.String(), "\n") {
			if f := strings.Split(line, "\t"); len(f) > 2 && f[2] == "issued" {
				issued[f[0]]++
			}
		}
	}
	if issued["caami"] != 1 || issued["ona"] != 1 || len(issued) != 2 {
		t.Errorf("the two runs issued %v, want one invoice for caami and one for ona", issued)
	}
	st, err := postgres.Open(ctx, r.stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	docs, err := st.ListDocuments(ctx, state.DocumentFilter{Period: r.period, Kind: state.KindInvoice})
	if err != nil {
		t.Fatal(err)
	}
	tenants := map[string]bool{}
	for i, d := range docs {
		tenants[d.Tenant] = true
		if d.Seq != int64(i+1) {
			t.Errorf("invoice %s has number %d, want %d: numbers are gap-free", d.Number, d.Seq, i+1)
		}
	}
	if len(docs) != 2 || !tenants["caami"] || !tenants["ona"] {
		t.Errorf("%d invoices stored for %s (%v), want one for caami and one for ona", len(docs), r.period, tenants)
	}
}
