// Package prometheus_test checks the Prometheus rule files in rules/ with the
// real tools that load them in production: promtool (check and unit tests)
// and a Prometheus server that scrapes, records and alerts. Both come from
// Debian's prometheus package, which `make test` installs.
package prometheus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/deploy/prometheus/rulestest"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// rulesDir is relative to this package: `go test` runs in the package's
// directory, deploy/prometheus.
const rulesDir = "rules"

// runbookBase is where an alert's runbook_url must point: a file of this
// repository on main, so that the runbook can be checked to exist.
const runbookBase = "https://github.com/paasmeter/paasmeter/blob/main/"

// maintenanceSilence ends every SLO alert's expression: nothing fires for an
// app while a declared maintenance window covers it.
const maintenanceSilence = "unless on (tenant, project, app) paasmeter_sla_maintenance_active == 1"

// tool finds a binary of Debian's prometheus package. Without it the test
// fails under CI=true, where `make test` must have installed it, and is
// skipped elsewhere.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := name + " not found: run `make test` as root (it installs Debian's prometheus package)"
		testenv.Missing(t, msg)
	}
	return path
}

// files returns the absolute paths of the rule files (rules/*.yml) and of
// their promtool unit tests (rules/*.test.yml). An empty directory fails:
// moving the rules must not turn these tests into no-ops.
func files(t *testing.T) (rules, tests []string) {
	t.Helper()
	dir, err := filepath.Abs(rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	all, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if strings.HasSuffix(f, ".test.yml") {
			tests = append(tests, f)
		} else {
			rules = append(rules, f)
		}
	}
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("%s holds %d rule files and %d unit test files; want both", dir, len(rules), len(tests))
	}
	return rules, tests
}

// ruleFile is the part of a rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func parse(t *testing.T, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// TestEveryRuleFilePassesPromtool runs promtool's check over every rule
// file and promtool's unit tests over every test file.
func TestEveryRuleFilePassesPromtool(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool")
	rules, tests := files(t)
	for _, f := range rules {
		t.Run(filepath.Base(f)+" passes promtool check rules", func(t *testing.T) {
			out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool check rules %s: %v\n%s", f, err, out)
			}
		})
	}
	for _, f := range tests {
		t.Run(filepath.Base(f)+" passes promtool test rules", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The unit tests name their rule files relative to themselves.
			cmd := exec.CommandContext(ctx, promtool, "test", "rules", filepath.Base(f))
			cmd.Dir = filepath.Dir(f)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool test rules %s: %v\n%s", f, err, out)
			}
			t.Logf("promtool test rules %s: %v", filepath.Base(f), time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestEveryAlertHasSeverityAnnotationsAndARunbookThatExists holds the alerts
// to what DESIGN.md §8 asks of them: Alertmanager routes on severity, and an
// on-call engineer follows runbook_url to a page of this repository.
// It needs no promtool.
func TestEveryAlertHasSeverityAnnotationsAndARunbookThatExists(t *testing.T) {
	t.Parallel()
	rules, _ := files(t)
	alerts := 0
	for _, path := range rules {
		for _, g := range parse(t, path).Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				alerts++
				t.Run(r.Alert+" has a severity, a summary, a description, a runbook in the repository and the maintenance silence", func(t *testing.T) {
					if s := r.Labels["severity"]; s != "page" && s != "ticket" {
						t.Errorf("severity %q, want page or ticket", s)
					}
					for _, a := range []string{"summary", "description", "runbook_url"} {
						if strings.TrimSpace(r.Annotations[a]) == "" {
							t.Errorf("no %s annotation", a)
						}
					}
					u := r.Annotations["runbook_url"]
					rel, ok := strings.CutPrefix(u, runbookBase)
					if !ok {
						t.Fatalf("runbook_url %q is not under %s", u, runbookBase)
					}
					rel, _, _ = strings.Cut(rel, "#")
					if _, err := os.Stat(filepath.Join("..", "..", filepath.FromSlash(rel))); err != nil {
						t.Errorf("runbook_url %q: %v", u, err)
					}
					// DESIGN.md §6: maintenance windows silence the SLO alerts.
					if strings.HasPrefix(r.Alert, "PaasmeterSLO") && !strings.HasSuffix(strings.TrimSpace(r.Expr), maintenanceSilence) {
						t.Errorf("expression does not end with %q:\n%s", maintenanceSilence, r.Expr)
					}
				})
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerting rule in any rule file")
	}
}

// probeMetrics expose what the node agent and the SLA collector export, under
// the same names and labels (runtime/reconcile/metrics.go, sla/metrics.go).
// Every scrape adds 9 passed and 1 failed probe for each app, so the error
// ratio is exactly 10 % whatever the timing of scrapes.
type probeMetrics struct {
	mu          sync.Mutex
	reg         *prometheus.Registry
	probes      *prometheus.CounterVec
	maintenance *prometheus.GaugeVec
	minutes     *prometheus.GaugeVec
}

func newProbeMetrics() *probeMetrics {
	m := &probeMetrics{
		reg: prometheus.NewRegistry(),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paasmeter_runtime_probes_total", Help: "Health probes of replicas, by result."},
			[]string{"tenant", "project", "app", "env", "result"}),
		maintenance: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_sla_maintenance_active", Help: "1 while a declared maintenance window covers the app."},
			[]string{"tenant", "project", "app"}),
		minutes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_sla_minutes", Help: "Minutes of the month to date, by state."},
			[]string{"tenant", "project", "app", "state"}),
	}
	m.reg.MustRegister(m.probes, m.maintenance, m.minutes)
	// web fails 10 % of its probes; docs too, but inside a maintenance window.
	m.maintenance.WithLabelValues("ulb", "portal", "web").Set(0)
	m.maintenance.WithLabelValues("ulb", "portal", "docs").Set(1)
	for state, n := range map[string]float64{"up": 990, "down_platform": 2, "down_tenant": 8, "maintenance": 60, "not_eligible": 0} {
		m.minutes.WithLabelValues("ulb", "portal", "web", state).Set(n)
	}
	return m
}

func (m *probeMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	for _, app := range []string{"web", "docs"} {
		m.probes.WithLabelValues("ulb", "portal", app, "prod", "ok").Add(9)
		m.probes.WithLabelValues("ulb", "portal", app, "prod", "failed").Add(1)
	}
	m.mu.Unlock()
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// server is a Prometheus process started for one test.
type server struct {
	base string
	out  *bytes.Buffer
}

// freePort returns a loopback port nobody listens on (a small race with
// other processes is accepted: Prometheus then fails to start and says so).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs a real Prometheus (bin) on a free loopback port with its own
// data directory, the rule files and a scrape of target, waits until it is
// ready and kills it when the test ends.
func startPrometheus(t *testing.T, bin string, rules []string, target string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: paasmeter
    static_configs:
      - targets: [%q]
`, strings.Join(rules, ", "), target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &server{base: "http://" + addr, out: &bytes.Buffer{}}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var mu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, s.out}, lockedWriter{&mu, s.out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Registered after t.TempDir, so it runs first: the data directory is
	// removed only once Prometheus is gone.
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			mu.Lock()
			t.Logf("prometheus output:\n%s", s.out)
			mu.Unlock()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited before it was ready: %v", err)
		default:
		}
		if resp, err := http.Get(s.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// get decodes the data of a Prometheus API response.
func (s *server) get(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(s.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if body.Status != "success" {
		t.Fatalf("GET %s: %s %s", path, body.Status, body.Error)
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// query returns the instant vector of expr.
func (s *server) query(t *testing.T, expr string) []apiSample {
	t.Helper()
	var got struct {
		Result []apiSample `json:"result"`
	}
	s.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &got)
	return got.Result
}

// eventually polls check until it returns "" or 30 seconds have passed, and
// fails with its last complaint.
func eventually(t *testing.T, check func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type apiRules struct {
	Groups []struct {
		Name  string `json:"name"`
		File  string `json:"file"`
		Rules []struct {
			Name      string `json:"name"`
			Type      string `json:"type"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"rules"`
	} `json:"groups"`
}

type apiSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func TestARealPrometheusLoadsTheRulesRecordsTheSLIAndAlerts(t *testing.T) {
	t.Parallel()
	bin := tool(t, "prometheus")
	rules, _ := files(t)
	target := httptest.NewServer(newProbeMetrics())
	t.Cleanup(target.Close)
	u, err := url.Parse(target.URL)
	if err != nil {
		t.Fatal(err)
	}
	copies := rulestest.FastCopies(t, rules, t.TempDir())
	start := time.Now()
	prom := startPrometheus(t, bin, copies, u.Host)
	t.Logf("prometheus ready in %v", time.Since(start).Round(time.Millisecond))

	t.Run("every group and rule of the rule files is loaded and evaluates with health ok", func(t *testing.T) {
		// What the files declare, group by group.
		want := map[string][]string{}
		for _, path := range copies {
			for _, g := range parse(t, path).Groups {
				for _, r := range g.Rules {
					want[g.Name] = append(want[g.Name], r.Record+r.Alert)
				}
			}
		}
		eventually(t, func() string {
			var got apiRules
			prom.get(t, "/api/v1/rules", &got)
			loaded := map[string][]string{}
			var problems []string
			for _, g := range got.Groups {
				for _, r := range g.Rules {
					loaded[g.Name] = append(loaded[g.Name], r.Name)
					if r.Health != "ok" || r.LastError != "" {
						problems = append(problems, fmt.Sprintf("%s/%s: health %q, lastError %q", g.Name, r.Name, r.Health, r.LastError))
					}
				}
			}
			if fmt.Sprint(loaded) != fmt.Sprint(want) {
				return fmt.Sprintf("loaded groups and rules:\n%v\nwant:\n%v", loaded, want)
			}
			if len(problems) > 0 {
				sort.Strings(problems)
				return "rules not (yet) healthy:\n" + strings.Join(problems, "\n")
			}
			return ""
		})
	})

	t.Run("the error ratio is recorded for the failing app and not for the one in maintenance", func(t *testing.T) {
		eventually(t, func() string {
			got := prom.query(t, "paasmeter_sla:probe_error_ratio:rate5m")
			if len(got) != 1 || got[0].Metric["app"] != "web" {
				return fmt.Sprintf("paasmeter_sla:probe_error_ratio:rate5m = %v, want one series, for web", got)
			}
			if v := value(t, got[0]); math.Abs(v-0.1) > 1e-9 {
				return fmt.Sprintf("web's error ratio %v, want 0.1", v)
			}
			return ""
		})
	})

	t.Run("the month-to-date availability counts platform-caused down minutes only", func(t *testing.T) {
		eventually(t, func() string {
			got := prom.query(t, "paasmeter_sla:availability:ratio_month")
			if len(got) != 1 || math.Abs(value(t, got[0])-0.998) > 1e-9 {
				return fmt.Sprintf("paasmeter_sla:availability:ratio_month = %v, want web at 0.998 (2 of 1,000 eligible minutes)", got)
			}
			return ""
		})
	})

	t.Run("the page and the ticket fire for the failing app and not for the one in maintenance", func(t *testing.T) {
		eventually(t, func() string {
			var got struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			}
			prom.get(t, "/api/v1/alerts", &got)
			var firing []string
			for _, a := range got.Alerts {
				if a.State == "firing" {
					firing = append(firing, a.Labels["alertname"]+" "+a.Labels["severity"]+" "+a.Labels["app"])
				}
			}
			sort.Strings(firing)
			want := []string{"PaasmeterSLOErrorBudgetBurnPage page web", "PaasmeterSLOErrorBudgetBurnTicket ticket web"}
			if fmt.Sprint(firing) != fmt.Sprint(want) {
				return fmt.Sprintf("firing alerts %q, want %q", firing, want)
			}
			return ""
		})
	})
}

// value reads the float of an instant-vector sample ([time, "value"]).
func value(t *testing.T, s apiSample) float64 {
	t.Helper()
	str, ok := s.Value[1].(string)
	if !ok {
		t.Fatalf("sample value %v is not a string", s.Value)
	}
	var v float64
	if _, err := fmt.Sscan(str, &v); err != nil {
		t.Fatalf("sample value %q: %v", str, err)
	}
	return v
}

// exportedLiterals returns the non-test Go source of the repository (../..),
// where every metric a rule reads must be named as a string literal.
func exportedLiterals(t *testing.T) string {
	t.Helper()
	var src strings.Builder
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src.Write(b)
		src.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() == 0 {
		t.Fatalf("no Go source under %s", root)
	}
	return src.String()
}

// TestEveryMetricTheRulesUseIsExportedByTheCode keeps the rules honest: an
// alert on a metric nobody exports never fires. Every selector of every
// alerting and recording rule must name a metric that the repository's
// non-test Go code names as a string literal (a histogram's _bucket, _sum and
// _count series by their base name), a recording rule's output, or `up`.
// (A rule may read none: the objective is vector(0.999).)
func TestEveryMetricTheRulesUseIsExportedByTheCode(t *testing.T) {
	t.Parallel()
	rules, _ := files(t)
	src := exportedLiterals(t)
	recorded := map[string]bool{"up": true}
	type rule struct{ file, name, expr string }
	var all []rule
	for _, path := range rules {
		for _, g := range parse(t, path).Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
				all = append(all, rule{filepath.Base(path), r.Record + r.Alert, r.Expr})
			}
		}
	}
	checked := 0
	for _, r := range all {
		t.Run(r.file+" "+r.name+" reads only metrics the code exports", func(t *testing.T) {
			expr, err := parser.ParseExpr(r.expr)
			if err != nil {
				t.Fatalf("parse %q: %v", r.expr, err)
			}
			var names []string
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					name := vs.Name
					if name == "" {
						for _, m := range vs.LabelMatchers {
							if m.Name == "__name__" {
								name = m.Value
							}
						}
					}
					if name == "" {
						t.Errorf("selector %s names no metric", vs)
					}
					names = append(names, name)
				}
				return nil
			})
			for _, name := range names {
				checked++
				if recorded[name] {
					continue
				}
				found := strings.Contains(src, `"`+name+`"`)
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(name, suffix); ok && !found {
						found = strings.Contains(src, `"`+base+`"`)
					}
				}
				if !found {
					t.Errorf("metric %s is neither recorded by a rule nor named as a string literal in the non-test Go code", name)
				}
			}
		})
	}
	if checked == 0 {
		t.Fatal("no metric selector in any rule")
	}
}
