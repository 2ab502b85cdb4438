package dashboards_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/dashboards"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// Paths are relative to this package's directory, where `go test` runs.
const (
	repoRoot        = ".."
	datasourcesFile = "../deploy/grafana/provisioning/datasources/paasmeter.yaml"
	dashboardsFile  = "../deploy/grafana/provisioning/dashboards/paasmeter.yaml"
	rulesGlob       = "../deploy/prometheus/rules/*.yml"
	regenerate      = "run `go run ./dashboards/gen` from the repository root and commit dashboards/*.json"
)

func TestGeneratedDashboards(t *testing.T) {
	t.Run("The checked-in dashboards are what the generator writes", func(t *testing.T) {
		tmp := t.TempDir()
		if err := dashboards.Write(tmp); err != nil {
			t.Fatal(err)
		}
		want := jsonFiles(t, tmp)
		got := jsonFiles(t, ".")
		if len(want) == 0 {
			t.Fatal("the generator wrote no dashboard")
		}
		for _, name := range want {
			w, err := os.ReadFile(filepath.Join(tmp, name))
			if err != nil {
				t.Fatal(err)
			}
			g, err := os.ReadFile(name)
			if err != nil {
				t.Errorf("dashboards/%s is missing: %s", name, regenerate)
				continue
			}
			if !bytes.Equal(g, w) {
				t.Errorf("dashboards/%s differs from the generator's output (first difference at line %d): %s", name, firstDiffLine(g, w), regenerate)
			}
		}
		for _, name := range got {
			if !slices.Contains(want, name) {
				t.Errorf("dashboards/%s is not written by the generator: remove it or add it to dashboards.All", name)
			}
		}
	})

	t.Run("Generating twice gives the same bytes", func(t *testing.T) {
		a, err := dashboards.All()
		if err != nil {
			t.Fatal(err)
		}
		b, err := dashboards.All()
		if err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if !bytes.Equal(a[i].JSON, b[i].JSON) {
				t.Errorf("%s: two runs of the generator differ", a[i].Name)
			}
			if !bytes.HasSuffix(a[i].JSON, []byte("}\n")) {
				t.Errorf("%s does not end with a newline", a[i].Name)
			}
		}
	})

	t.Run("The generator command writes the dashboards into the directory it is given", func(t *testing.T) {
		tmp := t.TempDir()
		cmd := exec.Command("go", "run", "./dashboards/gen", "-out", tmp)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go run ./dashboards/gen: %v\n%s", err, out)
		}
		for _, name := range jsonFiles(t, ".") {
			w, _ := os.ReadFile(name)
			g, err := os.ReadFile(filepath.Join(tmp, name))
			if err != nil || !bytes.Equal(g, w) {
				t.Errorf("the command's %s differs from dashboards/%s: %s", name, name, regenerate)
			}
		}
	})
}

func TestDashboardsReferences(t *testing.T) {
	sources := provisionedDatasources(t)
	boards := loadBoards(t)

	t.Run("The provisioning file loads the dashboards folder", func(t *testing.T) {
		var f struct {
			Providers []struct {
				Type    string `yaml:"type"`
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		readYAML(t, dashboardsFile, &f)
		if len(f.Providers) != 1 || f.Providers[0].Type != "file" || f.Providers[0].Options.Path == "" {
			t.Errorf("%s: want one file provider with a path, got %+v", dashboardsFile, f.Providers)
		}
	})

	t.Run("The provisioned datasources have the UIDs the dashboards use", func(t *testing.T) {
		for uid, typ := range map[string]string{
			dashboards.PrometheusUID: "prometheus",
			dashboards.LokiUID:       "loki",
			dashboards.ClickHouseUID: "grafana-clickhouse-datasource",
		} {
			if sources[uid] != typ {
				t.Errorf("%s: datasource %q has type %q, want %q", datasourcesFile, uid, sources[uid], typ)
			}
		}
	})

	t.Run("Every dashboard has a fixed UID and the variables datasource, tenant, app and env", func(t *testing.T) {
		for _, b := range boards {
			if !strings.HasPrefix(b.UID, "paasmeter-") {
				t.Errorf("%s: uid %q is not a fixed paasmeter-… UID", b.file, b.UID)
			}
			for _, name := range []string{"datasource", "tenant", "app", "env"} {
				if _, ok := b.variables()[name]; !ok {
					t.Errorf("%s: no template variable %q", b.file, name)
				}
			}
			for _, name := range []string{"tenant", "app", "env"} {
				v := b.variables()[name]
				if !strings.Contains(v.Definition, "label_values(") {
					t.Errorf("%s: variable %s is not a label_values query: %q", b.file, name, v.Definition)
				}
			}
		}
	})

	t.Run("Every panel's datasource is provisioned", func(t *testing.T) {
		n := 0
		for _, b := range boards {
			for _, r := range b.refs() {
				n++
				if err := checkDatasource(r.ds, b.variables(), sources); err != nil {
					t.Errorf("%s: %s: %v", b.file, r.where, err)
				}
			}
		}
		if n < 20 {
			t.Errorf("only %d datasource references checked: the walk misses panels", n)
		}
	})

	t.Run("Every variable a query uses is defined in its dashboard", func(t *testing.T) {
		n := 0
		for _, b := range boards {
			for _, q := range b.queries() {
				n++
				if missing := undefinedVariables(q.expr, b.variables()); len(missing) > 0 {
					t.Errorf("%s: %s: undefined variables %v in %q", b.file, q.where, missing, q.expr)
				}
			}
		}
		if n < 20 {
			t.Errorf("only %d queries checked: the walk misses panels", n)
		}
	})

	t.Run("A datasource that is not provisioned and an undefined variable are reported", func(t *testing.T) {
		vars := map[string]variable{"datasource": {Type: "datasource", Query: "prometheus", Current: current{Value: json.RawMessage(`"nope"`)}}}
		if checkDatasource(datasource{Type: "prometheus", UID: "missing"}, vars, sources) == nil {
			t.Error("an unknown UID passed")
		}
		if checkDatasource(datasource{Type: "prometheus", UID: "${datasource}"}, vars, sources) == nil {
			t.Error("a datasource variable defaulting to an unknown UID passed")
		}
		if checkDatasource(datasource{Type: "loki", UID: dashboards.PrometheusUID}, vars, sources) == nil {
			t.Error("a datasource of the wrong type passed")
		}
		if got := undefinedVariables(`rate(x{a=~"$tenant", b="${nope}"}[$__rate_interval])`, map[string]variable{"tenant": {}}); !slices.Equal(got, []string{"nope"}) {
			t.Errorf("undefined variables: got %v, want [nope]", got)
		}
	})
}

func TestDashboardsMetricNames(t *testing.T) {
	known := knownMetrics(t)
	boards := loadBoards(t)

	t.Run("Every metric a panel or variable queries is exported by the Go code or recorded by a rule", func(t *testing.T) {
		n := 0
		for _, b := range boards {
			for _, q := range b.queries() {
				if q.lang != "prometheus" {
					continue
				}
				for _, m := range metricNames(q.expr) {
					n++
					if !isKnown(m, known) {
						t.Errorf("%s: %s: metric %s is neither a string literal of the repository's Go code nor a recording rule: %q", b.file, q.where, m, q.expr)
					}
				}
			}
		}
		if n < 40 {
			t.Errorf("only %d metric names checked: the extraction misses queries", n)
		}
	})

	t.Run("A made-up metric is reported and histogram series are recognised", func(t *testing.T) {
		got := metricNames(`histogram_quantile(0.99, sum by (le, kind) (rate(paasmeter_made_up_seconds_bucket{kind=~"$kind", x="a b"}[$__rate_interval]))) / on () group_left () up_and_down:ratio`)
		if want := []string{"paasmeter_made_up_seconds_bucket", "up_and_down:ratio"}; !slices.Equal(got, want) {
			t.Fatalf("metricNames: got %v, want %v", got, want)
		}
		if isKnown("paasmeter_made_up_seconds_bucket", known) {
			t.Error("a made-up metric passed")
		}
		if !isKnown("paasmeter_store_batch_flush_duration_seconds_bucket", known) {
			t.Error("the _bucket series of an exported histogram was not recognised")
		}
		if got := metricNames(`label_values(paasmeter_runtime_replicas{tenant=~"$tenant"}, app)`); !slices.Equal(got, []string{"paasmeter_runtime_replicas"}) {
			t.Errorf("label_values: got %v", got)
		}
	})

	t.Run("Every Prometheus query parses", func(t *testing.T) {
		checkPromQL(t, boards)
	})
}

// --- dashboards as Grafana stores them ---

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type current struct {
	Value json.RawMessage `json:"value"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      any             `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasource     `json:"datasource"`
	Current    current         `json:"current"`
	Raw        json.RawMessage `json:"-"`
}

type target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *datasource `json:"datasource"`
}

type panel struct {
	ID         int         `json:"id"`
	Title      string      `json:"title"`
	Type       string      `json:"type"`
	Datasource *datasource `json:"datasource"`
	Targets    []target    `json:"targets"`
	Panels     []panel     `json:"panels"`
}

type board struct {
	file       string
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func (b *board) variables() map[string]variable {
	m := map[string]variable{}
	for _, v := range b.Templating.List {
		m[v.Name] = v
	}
	return m
}

func (b *board) panels() []panel {
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(b.Panels)
	return all
}

type ref struct {
	where string
	ds    datasource
}

// refs are the datasources of every panel, target and query variable.
func (b *board) refs() []ref {
	var rs []ref
	for _, p := range b.panels() {
		if p.Type == "row" {
			continue
		}
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.Datasource == nil {
			rs = append(rs, ref{where, datasource{}})
		} else {
			rs = append(rs, ref{where, *p.Datasource})
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil {
				rs = append(rs, ref{where + " query " + tg.RefID, *tg.Datasource})
			}
		}
	}
	for _, v := range b.Templating.List {
		if v.Datasource != nil {
			rs = append(rs, ref{"variable " + v.Name, *v.Datasource})
		}
	}
	return rs
}

type query struct {
	where, lang, expr string
}

// queries are every target's expression and every query variable's query.
func (b *board) queries() []query {
	vars := b.variables()
	var qs []query
	for _, p := range b.panels() {
		for _, tg := range p.Targets {
			ds := p.Datasource
			if tg.Datasource != nil {
				ds = tg.Datasource
			}
			lang := ""
			if ds != nil {
				lang = ds.Type
				if name, ok := variableName(ds.UID); ok {
					lang = fmt.Sprint(vars[name].Query)
				}
			}
			qs = append(qs, query{fmt.Sprintf("panel %d %q query %s", p.ID, p.Title, tg.RefID), lang, tg.Expr})
		}
	}
	for _, v := range b.Templating.List {
		if v.Type != "query" {
			continue
		}
		qs = append(qs, query{"variable " + v.Name, "prometheus", v.Definition})
		if m, ok := v.Query.(map[string]any); ok {
			qs = append(qs, query{"variable " + v.Name + " query", "prometheus", fmt.Sprint(m["query"])})
		}
	}
	return qs
}

func loadBoards(t *testing.T) []*board {
	t.Helper()
	var bs []*board
	for _, name := range jsonFiles(t, ".") {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		b := &board{file: name}
		if err := json.Unmarshal(raw, b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		bs = append(bs, b)
	}
	if len(bs) != 5 {
		t.Fatalf("want the 5 operators' dashboards in dashboards/, found %d: %s", len(bs), regenerate)
	}
	return bs
}

func jsonFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(m))
	for i, p := range m {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names
}

func firstDiffLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// --- datasources and variables ---

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// provisionedDatasources maps the provisioning file's UIDs to their types.
func provisionedDatasources(t *testing.T) map[string]string {
	t.Helper()
	var f struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	readYAML(t, datasourcesFile, &f)
	m := map[string]string{}
	for _, d := range f.Datasources {
		if d.UID == "" {
			t.Fatalf("%s: a datasource without a fixed uid", datasourcesFile)
		}
		m[d.UID] = d.Type
	}
	return m
}

var varRef = regexp.MustCompile(`\$(?:\{([A-Za-z_]\w*)(?::\w+)?\}|([A-Za-z_]\w*))`)

// variableName reports the variable a datasource UID like ${datasource} names.
func variableName(uid string) (string, bool) {
	m := varRef.FindStringSubmatch(uid)
	if m == nil || m[0] != uid {
		return "", false
	}
	return m[1] + m[2], true
}

// checkDatasource accepts a provisioned UID of the right type, or a
// datasource variable of that type whose default is one.
func checkDatasource(ds datasource, vars map[string]variable, sources map[string]string) error {
	uid := ds.UID
	if name, ok := variableName(uid); ok {
		v, ok := vars[name]
		if !ok || v.Type != "datasource" {
			return fmt.Errorf("datasource %s is not a datasource variable of the dashboard", uid)
		}
		if fmt.Sprint(v.Query) != ds.Type {
			return fmt.Errorf("datasource variable %s lists %v datasources, the panel wants %s", name, v.Query, ds.Type)
		}
		var def string
		if err := json.Unmarshal(v.Current.Value, &def); err != nil {
			return fmt.Errorf("datasource variable %s has no default UID: %v", name, err)
		}
		uid = def
	}
	typ, ok := sources[uid]
	if !ok {
		return fmt.Errorf("datasource UID %q (type %q) is not in %s", uid, ds.Type, datasourcesFile)
	}
	if typ != ds.Type {
		return fmt.Errorf("datasource %q is a %s datasource, the panel says %s", uid, typ, ds.Type)
	}
	return nil
}

// undefinedVariables lists the $variables of expr that vars does not define;
// Grafana's own ($__rate_interval, $__all …) are always defined.
func undefinedVariables(expr string, vars map[string]variable) []string {
	var missing []string
	for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
		name := m[1] + m[2]
		if strings.HasPrefix(name, "__") {
			continue
		}
		if _, ok := vars[name]; !ok && !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
	}
	return missing
}

// --- metric names ---

var (
	identifier = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)
	recordRule = regexp.MustCompile(`(?m)^\s*-?\s*record:\s*["']?([A-Za-z_:][A-Za-z0-9_:]*)`)
)

// knownMetrics are the string literals of the repository's non-test Go code
// that look like metric names, outside dashboards/ (whose queries would
// vouch for themselves), and the recording rules' names.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != repoRoot && (strings.HasPrefix(name, ".") || name == "vendor" || name == "testdata" || name == "node_modules" ||
				filepath.Clean(path) == filepath.Clean(filepath.Join(repoRoot, "dashboards"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // another engineer's file in progress: its literals do not count
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && identifier.MatchString(s) {
					known[s] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Glob(rulesGlob)
	if err != nil {
		t.Fatal(err)
	}
	nrec := 0
	for _, path := range rules {
		if strings.HasSuffix(path, ".test.yml") {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range recordRule.FindAllSubmatch(raw, -1) {
			known[string(m[1])] = true
			nrec++
		}
	}
	if nrec == 0 || !known["paasmeter_collector_records_total"] {
		t.Fatalf("the known metrics look incomplete (%d recording rules, %d literals)", nrec, len(known))
	}
	return known
}

// isKnown accepts a known name, or the _bucket, _sum or _count series of one.
func isKnown(name string, known map[string]bool) bool {
	if known[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return true
		}
	}
	return false
}

var (
	promString    = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promBraces    = regexp.MustCompile(`\{[^{}]*\}`)
	promRange     = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	labelValues   = regexp.MustCompile(`^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`)
	promOperators = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames extracts the metric names of a PromQL expression (or of a
// label_values variable query): identifiers that are not inside strings,
// matchers, ranges or grouping clauses, not called as functions, and not
// keywords.
func metricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		return []string{m[1]}
	}
	s := promString.ReplaceAllString(expr, `""`)
	s = promBraces.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = regexp.MustCompile(`\$\{?\w+\}?`).ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promOperators[name] || (loc[0] > 0 && isDigitOrDot(s[loc[0]-1])) {
			continue // a function, an aggregation, a keyword, or a number's exponent/unit
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

func isDigitOrDot(c byte) bool { return c == '.' || (c >= '0' && c <= '9') }

// checkPromQL has promtool parse every Prometheus query, each as a recording
// rule, with Grafana's variables replaced by values Prometheus accepts.
func checkPromQL(t *testing.T, boards []*board) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found: run `make test` as root (it installs Debian's prometheus package)"
		testenv.Missing(t, msg)
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	var origin []string
	for _, b := range boards {
		for _, q := range b.queries() {
			if q.lang != "prometheus" || strings.HasPrefix(strings.TrimSpace(q.expr), "label_values(") {
				continue
			}
			e := strings.ReplaceAll(q.expr, "$__rate_interval", "5m")
			e = varRef.ReplaceAllString(e, ".*")
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", len(rules)), Expr: e})
			origin = append(origin, b.file+": "+q.where)
		}
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s\nqueries in order:\n%s", err, out, strings.Join(origin, "\n"))
	}
}
