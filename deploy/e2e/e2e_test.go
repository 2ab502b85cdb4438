// Package e2e_test runs the example platform end to end with the real
// monitoring stack of the operators (DESIGN.md §8, §9): `paasmeter up` with
// examples/platform.yaml on the test Docker Engine, a Prometheus 2.42 that
// scrapes the collector and the agent as docs/runbooks/README.md says and
// loads deploy/prometheus/rules, and an Alertmanager 0.25 with
// deploy/alertmanager/alertmanager.yml. Every dashboard query and every
// recording rule must return series from that Prometheus, and an alert must
// reach the on-call webhook through the repository's routing.
//
// It needs Docker (PAASMETER_TEST_DOCKER_HOST), prometheus and
// prometheus-alertmanager, which `make test` installs and starts: without
// them the test fails under CI=true and is skipped elsewhere.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/deploy/prometheus/rulestest"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/supervise"
)

// repoRoot is the repository, relative to this package's directory (where
// `go test` runs it).
const repoRoot = "../.."

// seriesTimeout bounds the wait for every query to return series: rates need
// two scrapes, usage records a shipped window, restarts a few backoffs.
const seriesTimeout = 2 * time.Minute

// exceptions are the dashboard queries (by expression, after the template
// variables are substituted, or by panel title) and recording rules (by
// record name) that legitimately return no series in a healthy run of a
// minute or two. The test prints them; one that returns series after all is
// reported, so the list can only shrink.
var exceptions = map[string]string{
	"Collector 5xx ratio":    "no request fails with a 5xx in a healthy run (the numerator has no series, so the ratio has none)",
	"Store operation errors": "no store operation fails in a healthy run",
	"Ship errors by reason":  "no batch fails to ship in a healthy run",
	"Loki pushes rate-limited": "nothing pushes to the collector's Loki push API in this run: the agent ships " +
		"container logs to /api/v1/logs, which paasmeter_collector_records_total{kind=\"logs\"} counts",
	`sum by (kind, reason) (rate(paasmeter_collector_throttled_requests_total[1m]))`: "no batch waits past collector.queue_timeout at this load",
	`sum by (kind, reason) (rate(paasmeter_store_batch_rejected_appends_total[1m]))`: "the batching writer refuses nothing while its queue has room and the store answers",
}

// tool finds a binary of Debian's packages; without it the test fails under
// CI=true and is skipped elsewhere.
func tool(t *testing.T, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found: run `make test` as root (it installs Debian's %s package)", names[0], pkg)
	testenv.Missing(t, msg)
	return ""
}

// child is a process started by the test.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *testenv.SyncBuffer
	exited chan struct{}
	err    error
}

// start runs cmd and registers its end: stop (a signal, then a kill after
// grace) when the test ends, failure or not. Its output is logged when the
// test failed.
func start(t *testing.T, name string, cmd *exec.Cmd, stop os.Signal, grace time.Duration) *child {
	t.Helper()
	c := &child{name: name, cmd: cmd, out: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { c.err = cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.stop(t, stop, grace)
		// A process asked to stop with SIGINT must stop cleanly.
		if stop == os.Interrupt && c.err != nil {
			t.Errorf("%s after %v: %v", name, stop, c.err)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(c.out.String(), 8000))
		}
	})
	return c
}

// stop signals the process, waits up to grace, then kills it.
func (c *child) stop(t *testing.T, sig os.Signal, grace time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(grace):
		t.Errorf("%s did not stop %v after %v: killed", c.name, sig, grace)
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// waitHTTP polls url until it answers 200, failing if c exits first.
func waitHTTP(t *testing.T, c *child, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !c.running() {
			t.Fatalf("%s exited before %s answered: %v\n%s", c.name, url, c.err, tail(c.out.String(), 8000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering after %v", url, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// platform is `paasmeter up` of the example platform, under a node name and
// institution ids of its own, so that parallel tests on the engine never
// share containers, networks or volumes.
type platform struct {
	node, api, admin, agentAdmin string
	tenants                      []string
}

func startPlatform(t *testing.T, cli *client.Client, dir string) *platform {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "paasmeter")
	build := exec.Command("go", "build", "-o", bin, "./cmd/paasmeter")
	build.Dir = root
	began := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/paasmeter: %v\n%s", err, out)
	}
	t.Logf("paasmeter built in %v", time.Since(began).Round(time.Millisecond))

	suffix := fmt.Sprintf("e2e%d", time.Now().UnixNano()%1e9)
	p := &platform{node: "node-" + suffix, api: testenv.FreeAddr(t), admin: testenv.FreeAddr(t), agentAdmin: testenv.FreeAddr(t),
		tenants: []string{"caami-" + suffix, "ona-" + suffix}}
	rename := func(s string) string {
		s = regexp.MustCompile(`\bnode-1\b`).ReplaceAllString(s, p.node)
		s = regexp.MustCompile(`\bcaami\b`).ReplaceAllString(s, p.tenants[0])
		return regexp.MustCompile(`\bona\b`).ReplaceAllString(s, p.tenants[1])
	}
	example, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "paasmeter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"127.0.0.1:8080", p.api, "127.0.0.1:9090", p.admin, "127.0.0.1:9100", p.agentAdmin,
		// The batching writer, on by default with ClickHouse only, is turned
		// on for the embedded store: the pipeline dashboard's batching
		// panels then have something to show.
		"data_dir: data", "data_dir: "+filepath.Join(dir, "data")+"\n  batch: {enabled: true}",
		"spool_dir: spool", "spool_dir: "+filepath.Join(dir, "spool"),
		"rate_card: deploy/", "rate_card: "+filepath.Join(root, "deploy")+"/",
		"sla_file: deploy/", "sla_file: "+filepath.Join(root, "deploy")+"/",
		// Usage windows of 10 s instead of a minute: the usage panels see
		// shipped records within the test's two minutes.
		"window: 1m", "window: 10s",
		"sample_interval: 5s", "sample_interval: 2s",
	).Replace(rename(string(example)))
	for _, want := range []string{p.api, p.admin, p.agentAdmin, filepath.Join(dir, "spool"), "window: 10s", "node: " + p.node} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("deploy/examples/paasmeter.yaml changed: %q not set in the test's copy", want)
		}
	}
	cfgPath := filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	plat, err := os.ReadFile(filepath.Join(root, "examples", "platform.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	platPath := filepath.Join(dir, "platform.yaml")
	if err := os.WriteFile(platPath, []byte(rename(string(plat))), 0o600); err != nil {
		t.Fatal(err)
	}

	// Registered before the process, so it runs after it has stopped:
	// nothing of this platform stays on the engine, even on failure.
	t.Cleanup(func() { removePlatform(t, cli, p) })
	cmd := exec.Command(bin, "up", "--config", cfgPath, "--platform", platPath)
	cmd.Env = append(os.Environ(), "PAASMETER_AGENT_TOKEN=pm_example_agent_node1",
		"PAASMETER_DOCKER_HOST="+os.Getenv(dockertest.HostEnv))
	up := start(t, "paasmeter up", cmd, os.Interrupt, 60*time.Second)
	waitHTTP(t, up, "http://"+p.api+"/readyz", 60*time.Second)
	waitHTTP(t, up, "http://"+p.agentAdmin+"/metrics", 30*time.Second)
	t.Logf("paasmeter up ready in %v (node %s, institutions %v)", time.Since(began).Round(time.Millisecond), p.node, p.tenants)
	return p
}

// removePlatform removes whatever `up` left of the platform on the engine.
func removePlatform(t *testing.T, cli *client.Client, p *platform) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", supervise.LabelNode+"="+p.node))})
	if err != nil {
		t.Errorf("list the platform's containers: %v", err)
	}
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		dockertest.RemoveCgroupParent("/paasmeter/" + c.Labels[engine.LabelRun])
	}
	vols, _ := cli.VolumeList(ctx, volume.ListOptions{})
	for _, tenant := range p.tenants {
		_ = cli.NetworkRemove(ctx, supervise.Network(tenant))
		for _, v := range vols.Volumes {
			if strings.HasPrefix(v.Name, "pm-"+tenant+"-") {
				_ = cli.VolumeRemove(ctx, v.Name, true)
			}
		}
	}
}

// webhook is the receivers of alertmanager.yml, for the test.
type webhook struct {
	mu       sync.Mutex
	received []notification
}

type notification struct {
	Path     string
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var n notification
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&n); err == nil {
			n.Path = r.URL.Path
			w.mu.Lock()
			w.received = append(w.received, n)
			w.mu.Unlock()
		}
	}
	rw.WriteHeader(http.StatusOK)
}

// find returns the notification that carries alertname firing, if any.
func (w *webhook) find(alertname string) (notification, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.received {
		for _, a := range n.Alerts {
			if a.Labels["alertname"] == alertname && a.Status == "firing" {
				return n, true
			}
		}
	}
	return notification{}, false
}

func startAlertmanager(t *testing.T, bin, dir, receiverURL string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "alertmanager", "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("http://127.0.0.1:9094/")) {
		t.Fatal("deploy/alertmanager/alertmanager.yml has no webhook on http://127.0.0.1:9094/ to point at the test's receiver")
	}
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, bytes.ReplaceAll(b, []byte("http://127.0.0.1:9094/"), []byte(receiverURL+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	am := start(t, "alertmanager", exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "am-data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn"), os.Kill, 10*time.Second)
	waitHTTP(t, am, "http://"+addr+"/-/ready", 30*time.Second)
	return addr
}

// probeRules is an alert the test makes fire at once: severity page, so the
// repository's routing sends it to the oncall receiver (group_wait 10s).
// No operational alert of the rules can stand in for it within a minute of a
// healthy run: the example's OOM-killed app would be the candidate, but
// PaasmeterContainerOOMKilled (increase(container_oom_events_total[15m]) > 0)
// never fires for it, since each killed run is a new series that the agent
// creates at 1, and increase() over a single value is 0; the ticket route's
// group_wait is 5 minutes besides.
const probeRules = `groups:
  - name: e2e-probe
    rules:
      - alert: PaasmeterE2EProbe
        expr: up{job="paasmeter-collector"} == 1
        labels:
          severity: page
        annotations:
          summary: end-to-end test probe
`

func startPrometheus(t *testing.T, bin, dir string, p *platform, rules []string, alertmanager string) *prom {
	t.Helper()
	probe := filepath.Join(dir, "e2e-probe.yml")
	if err := os.WriteFile(probe, []byte(probeRules), 0o644); err != nil {
		t.Fatal(err)
	}
	files := append(rulestest.FastCopies(t, rules, dir), probe)
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = fmt.Sprintf("%q", f)
	}
	// The label conventions of docs/runbooks/README.md.
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: paasmeter-collector
    static_configs:
      - targets: [%q]
  - job_name: paasmeter-agent
    honor_labels: true
    static_configs:
      - targets: [%q]
        labels: {node: %q}
`, strings.Join(quoted, ", "), alertmanager, p.admin, p.agentAdmin, p.node)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	c := start(t, "prometheus", exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "prom-data"),
		"--web.listen-address="+addr, "--log.level=warn"), os.Kill, 10*time.Second)
	waitHTTP(t, c, "http://"+addr+"/-/ready", 30*time.Second)
	return &prom{base: "http://" + addr}
}

// prom is the Prometheus HTTP API.
type prom struct{ base string }

// get decodes the data of an API answer.
func (p *prom) get(path string, data any) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, body.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// series runs an instant query and returns how many series (or 1 for a
// scalar) it gives.
func (p *prom) series(q string) (int, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return 0, err
	}
	switch data.ResultType {
	case "scalar", "string":
		return 1, nil
	}
	var r []json.RawMessage
	if err := json.Unmarshal(data.Result, &r); err != nil {
		return 0, err
	}
	return len(r), nil
}

// labelValues is Grafana's label_values(selector, label).
func (p *prom) labelValues(selector, label string) ([]string, error) {
	var vals []string
	err := p.get("/api/v1/label/"+url.PathEscape(label)+"/values?match[]="+url.QueryEscape(selector), &vals)
	return vals, err
}

// substitute replaces the dashboards' template variables as Grafana does
// with "All" selected on every variable, with `.+` for the institution, app
// and environment: a series without the label does not pass.
func substitute(expr string) string {
	return strings.NewReplacer(
		"${datasource}", "paasmeter-prometheus",
		"$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m",
		"${tenant}", ".+", "${app}", ".+", "${env}", ".+",
		"$tenant", ".+", "$app", ".+", "$env", ".+",
	).Replace(expr)
}

// check is one query that must return series.
type check struct {
	name, expr string // name: the subtest's
	exception  string // why it may return none, or ""
	labelVals  string // for a variable's label_values: the label
	found      int
	after      time.Duration // when it first returned series
}

type dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title      string `json:"title"`
	Datasource struct {
		Type string `json:"type"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// dashboardChecks returns the Prometheus queries of every dashboard and its
// variables; it logs the targets of other datasources it leaves out.
func dashboardChecks(t *testing.T) []*check {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards/*.json: %v", err)
	}
	var checks []*check
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := filepath.Base(f)
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				var s string
				if json.Unmarshal(v.Query, &s) != nil {
					t.Fatalf("%s: variable %s: query %s", base, v.Name, v.Query)
				}
				q.Query = s
			}
			m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q.Query))
			if m == nil {
				t.Fatalf("%s: variable %s: %q is not label_values(selector, label)", base, v.Name, q.Query)
			}
			checks = append(checks, &check{name: fmt.Sprintf("%s variable %s", base, v.Name), expr: substitute(m[1]), labelVals: m[2]})
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for i, tg := range p.Targets {
					if tg.Expr == "" {
						continue
					}
					ds := tg.Datasource.Type
					if ds == "" {
						ds = p.Datasource.Type
					}
					if ds != "prometheus" {
						t.Logf("not checked: %s panel %q target %d queries a %s datasource: %s", base, p.Title, i, ds, tg.Expr)
						continue
					}
					expr := substitute(tg.Expr)
					if strings.Contains(expr, "$") {
						t.Errorf("%s panel %q: a template variable is left after substitution: %s", base, p.Title, expr)
						continue
					}
					c := &check{name: fmt.Sprintf("%s panel %q target %d", base, p.Title, i), expr: expr}
					if r, ok := exceptions[expr]; ok {
						c.exception = r
					} else if r, ok := exceptions[p.Title]; ok {
						c.exception = r
					}
					checks = append(checks, c)
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	return checks
}

// ruleFiles returns deploy/prometheus/rules/*.yml without the unit tests.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "prometheus", "rules", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, f := range all {
		if !strings.HasSuffix(f, ".test.yml") {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, abs)
		}
	}
	if len(rules) == 0 {
		t.Fatal("no rule file in deploy/prometheus/rules")
	}
	return rules
}

// recordingChecks returns every recording rule's expression.
func recordingChecks(t *testing.T, rules []string) []*check {
	t.Helper()
	var checks []*check
	for _, path := range rules {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Record == "" {
					continue
				}
				checks = append(checks, &check{name: filepath.Base(path) + " record " + r.Record, expr: r.Expr, exception: exceptions[r.Record]})
			}
		}
	}
	if len(checks) == 0 {
		t.Fatal("no recording rule")
	}
	return checks
}

func TestThePlatformsDashboardsRulesAndAlertsWorkWithARealPrometheusAndAlertmanager(t *testing.T) {
	t.Parallel()
	began := time.Now()
	cli := dockertest.Client(t)
	promBin := tool(t, "prometheus", "prometheus")
	amBin := tool(t, "prometheus-alertmanager", "prometheus-alertmanager", "/usr/bin/prometheus-alertmanager")
	rules := ruleFiles(t)
	checks := dashboardChecks(t)
	checks = append(checks, recordingChecks(t, rules)...)
	dir := t.TempDir()

	hook := &webhook{}
	receiver := httptest.NewServer(hook)
	t.Cleanup(receiver.Close)
	am := startAlertmanager(t, amBin, dir, receiver.URL)
	p := startPlatform(t, cli, dir)
	prom := startPrometheus(t, promBin, dir, p, rules, am)
	t.Logf("prometheus and alertmanager ready %v after the test began", time.Since(began).Round(time.Millisecond))

	// /readyz, as a load balancer in front of the collector asks it: the
	// overview's store-readiness panel counts its answers.
	readyz := func() {
		if resp, err := http.Get("http://" + p.api + "/readyz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	t.Run("both targets are up and the platform's containers run", func(t *testing.T) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			var res struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
				} `json:"result"`
			}
			msg := ""
			if err := prom.get("/api/v1/query?query="+url.QueryEscape(`up == 1`), &res); err != nil {
				msg = err.Error()
			} else {
				jobs := map[string]string{}
				for _, r := range res.Result {
					jobs[r.Metric["job"]] = r.Metric["node"]
				}
				if _, ok := jobs["paasmeter-collector"]; !ok {
					msg = fmt.Sprintf("collector target not up: %v", res)
				} else if node, ok := jobs["paasmeter-agent"]; !ok || node != p.node {
					msg = fmt.Sprintf("agent target not up with node=%q: %v", p.node, res)
				}
			}
			if msg == "" {
				n, err := prom.series(`paasmeter_runtime_replicas{state="running"} > 0`)
				if err != nil || n == 0 {
					msg = fmt.Sprintf("no running replica scraped yet (%v)", err)
				}
			}
			if msg == "" {
				t.Logf("targets up and containers running %v after the test began", time.Since(began).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatal(msg)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	if t.Failed() {
		return
	}

	// Every query until it has series (exceptions too, to report those that
	// do), for at most seriesTimeout.
	deadline := time.Now().Add(seriesTimeout)
	for {
		readyz()
		pending := 0
		for _, c := range checks {
			if c.found > 0 {
				continue
			}
			var n int
			var err error
			if c.labelVals != "" {
				var vals []string
				vals, err = prom.labelValues(c.expr, c.labelVals)
				n = len(vals)
			} else {
				n, err = prom.series(c.expr)
			}
			if err != nil {
				t.Errorf("%s: %s: %v", c.name, c.expr, err)
				c.found = -1
				continue
			}
			c.found, c.after = n, time.Since(began)
			if n == 0 && c.exception == "" {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	slowest := checks[0]
	for _, c := range checks {
		if c.found > 0 && c.after > slowest.after {
			slowest = c
		}
	}
	t.Logf("queries checked %v after the test began; the last to return series: %s (%s)",
		time.Since(began).Round(time.Millisecond), slowest.name, slowest.expr)
	for _, c := range checks {
		t.Run(c.name+" returns series", func(t *testing.T) {
			switch {
			case c.found < 0:
				t.Fatal("query failed (above)")
			case c.exception != "" && c.found == 0:
				t.Logf("EXCEPTION, no series expected: %s\n  %s", c.exception, c.expr)
			case c.exception != "":
				t.Logf("listed as an exception (%s) but returns %d series now: %s", c.exception, c.found, c.expr)
			case c.found == 0 && c.labelVals != "":
				t.Errorf("label_values(%s, %s) is empty: the variable offers no value", c.expr, c.labelVals)
			case c.found == 0:
				t.Errorf("no series after %v: %s", seriesTimeout, c.expr)
			}
		})
	}

	t.Run("an alert of severity page reaches the oncall webhook through Alertmanager", func(t *testing.T) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if n, ok := hook.find("PaasmeterE2EProbe"); ok {
				if n.Path != "/oncall" || n.Receiver != "oncall" {
					t.Errorf("PaasmeterE2EProbe (severity page) reached %s (receiver %q), want /oncall (receiver oncall)", n.Path, n.Receiver)
				}
				t.Logf("PaasmeterE2EProbe reached %s %v after the test began", n.Path, time.Since(began).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				hook.mu.Lock()
				t.Fatalf("no firing PaasmeterE2EProbe at the webhook; received: %+v", hook.received)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("the logs dashboard's Loki query returns an institution's lines from the collector", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(repoRoot, "dashboards", "logs.json"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`"expr": "(\{(?:[^"\\]|\\.)*\})"`).FindSubmatch(b)
		if m == nil {
			t.Fatal("logs.json has no Loki stream selector")
		}
		var raw string
		if err := json.Unmarshal([]byte(`"`+string(m[1])+`"`), &raw); err != nil {
			t.Fatal(err)
		}
		q := url.Values{"query": {substitute(raw)}, "limit": {"10"}, "direction": {"backward"},
			"start": {strconv.FormatInt(began.Add(-time.Minute).UnixNano(), 10)}, "end": {strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10)}}
		// Grafana's Loki datasource reads as an operator, one institution per
		// datasource (deploy/grafana/provisioning): the example's admin token.
		// ona's batch job prints a line each run; caami's web servers print nothing.
		tenant := p.tenants[1]
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+p.api+"/loki/api/v1/query_range?"+q.Encode(), nil)
			req.Header.Set("Authorization", "Bearer pm_example_admin")
			req.Header.Set("X-Scope-OrgID", tenant)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var out struct {
				Data struct {
					Result []json.RawMessage `json:"result"`
				} `json:"data"`
			}
			if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &out) == nil && len(out.Data.Result) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("query_range %s: %s %s; want streams of %s", q.Get("query"), resp.Status, body, tenant)
			}
		}
	})

	t.Logf("whole run %v before stopping", time.Since(began).Round(time.Millisecond))
}
