// Package dashboards builds the operators' Grafana dashboards (DESIGN.md §8)
// with the Grafana Foundation SDK. `go run ./dashboards/gen` writes them to
// dashboards/*.json, which Grafana loads through
// deploy/grafana/provisioning/dashboards/paasmeter.yaml; the tests check that
// the checked-in files are what the code generates.
//
// Every query names only metrics that the repository exports (Go string
// literals) or records (deploy/prometheus/rules/*.yml).
package dashboards

//lint:file-ignore SA1019 the SDK marks the classic dashboard schema deprecated in favour of dashboardv2, which only Grafana 12 with its new-layouts feature loads; file provisioning of every current Grafana reads the classic JSON written here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The datasource UIDs fixed by deploy/grafana/provisioning/datasources/paasmeter.yaml.
const (
	PrometheusUID = "paasmeter-prometheus"
	LokiUID       = "paasmeter-collector-loki"
	ClickHouseUID = "paasmeter-clickhouse"
)

// File is one generated dashboard.
type File struct {
	Name string // file name in dashboards/, e.g. overview.json
	JSON []byte // deterministic, indented, with a trailing newline
}

// All builds every dashboard, in a fixed order.
func All() ([]File, error) {
	builders := []struct {
		name  string
		build func() *dashboard.DashboardBuilder
	}{
		{"overview.json", overview},
		{"usage.json", usage},
		{"sla.json", slaDashboard},
		{"pipeline.json", pipeline},
		{"logs.json", logsDashboard},
	}
	files := make([]File, 0, len(builders))
	for _, b := range builders {
		d, err := b.build().Build()
		if err != nil {
			return nil, fmt.Errorf("dashboards: build %s: %w", b.name, err)
		}
		js, err := Render(d)
		if err != nil {
			return nil, fmt.Errorf("dashboards: render %s: %w", b.name, err)
		}
		files = append(files, File{Name: b.name, JSON: js})
	}
	return files, nil
}

// Write writes every dashboard into dir.
func Write(dir string) error {
	files, err := All()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.JSON, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Render encodes a dashboard deterministically: the SDK's JSON is decoded
// into generic values and encoded again, so every object's keys are sorted;
// two-space indent, no HTML escaping (PromQL's > stays readable), trailing
// newline.
func Render(d dashboard.Dashboard) ([]byte, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil { // Encode ends with a newline
		return nil, err
	}
	return buf.Bytes(), nil
}

// --- shared pieces ---

func ptr[T any](v T) *T { return &v }

var (
	promVar = dashboard.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}
	lokiDS  = dashboard.DataSourceRef{Type: ptr("loki"), Uid: ptr(LokiUID)}
)

// sel is the label matcher of the template variables a metric carries.
func sel(labels ...string) string {
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf(`%s=~"$%s"`, l, l)
	}
	return strings.Join(parts, ", ")
}

// board starts a dashboard with the variables every one has: the Prometheus
// datasource, then tenant, app and env from label_values of labelMetric
// (a metric carrying all three labels), each narrowed by the ones before.
type board struct {
	*dashboard.DashboardBuilder
	nextID uint32
}

func newBoard(uid, title, description, labelMetric string) *board {
	b := &board{DashboardBuilder: dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"paasmeter", "operators"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-6h", "now").
		Timezone(common.TimeZoneUtc).
		Refresh("1m")}
	b.WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
		Label("Prometheus").
		Type("prometheus").
		Current(dashboard.VariableOption{
			Selected: ptr(true),
			Text:     dashboard.StringOrArrayOfString{String: ptr("Prometheus")},
			Value:    dashboard.StringOrArrayOfString{String: ptr(PrometheusUID)},
		}))
	query := func(name, label, matcher string) *dashboard.QueryVariableBuilder {
		expr := labelMetric
		if matcher != "" {
			expr += "{" + matcher + "}"
		}
		q := fmt.Sprintf("label_values(%s, %s)", expr, name)
		return dashboard.NewQueryVariableBuilder(name).
			Label(label).
			Datasource(promVar).
			Query(dashboard.StringOrMap{Map: map[string]any{"qryType": 1, "query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"}}).
			Definition(q).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".*").
			Current(dashboard.VariableOption{
				Selected: ptr(true),
				Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
			})
	}
	b.WithVariable(query("tenant", "Tenant", ""))
	b.WithVariable(query("app", "App", sel("tenant")))
	b.WithVariable(query("env", "Env", sel("tenant", "app")))
	return b
}

func (b *board) id() uint32 { b.nextID++; return b.nextID }

func (b *board) row(title string) { b.WithRow(dashboard.NewRowBuilder(title).Id(b.id())) }

// q is a Prometheus range query.
func q(ref, expr, legend string) cog.Builder[variants.Dataquery] {
	return prometheus.NewDataqueryBuilder().RefId(ref).Datasource(promVar).Expr(expr).LegendFormat(legend).Range()
}

// qi is an instant Prometheus query for a table.
func qi(ref, expr string) cog.Builder[variants.Dataquery] {
	return prometheus.NewDataqueryBuilder().RefId(ref).Datasource(promVar).Expr(expr).
		Format(prometheus.PromQueryFormatTable).Instant()
}

func refs(qs []cog.Builder[variants.Dataquery]) []cog.Builder[variants.Dataquery] { return qs }

func (b *board) graph(title, desc, unit string, w uint32, qs ...cog.Builder[variants.Dataquery]) {
	b.WithPanel(timeseries.NewPanelBuilder().Id(b.id()).Title(title).Description(desc).
		Datasource(promVar).Unit(unit).Span(w).Height(8).FillOpacity(10).Targets(refs(qs)).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).Calcs([]string{})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)))
}

func (b *board) stat(title, desc, unit string, w uint32, qs ...cog.Builder[variants.Dataquery]) {
	b.WithPanel(stat.NewPanelBuilder().Id(b.id()).Title(title).Description(desc).
		Datasource(promVar).Unit(unit).Span(w).Height(4).GraphMode(common.BigValueGraphModeArea).
		ColorMode(common.BigValueColorModeValue).Targets(refs(qs)).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)))
}

func (b *board) table(title, desc, unit string, w uint32, qs ...cog.Builder[variants.Dataquery]) {
	b.WithPanel(table.NewPanelBuilder().Id(b.id()).Title(title).Description(desc).
		Datasource(promVar).Unit(unit).Span(w).Height(8).Targets(refs(qs)).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}))
}

const rate = "[$__rate_interval]"

// --- the dashboards ---

func overview() *dashboard.DashboardBuilder {
	b := newBoard("paasmeter-overview", "paasmeter / Platform overview",
		"Operators only. The collector's traffic, the metering store, the agents and the containers they run.",
		"paasmeter_runtime_replicas")
	app := sel("tenant", "app", "env")

	b.row("Collector")
	b.graph("Collector requests by route", "Requests to the tenants' listener, per second.", "reqps", 12,
		q("A", `sum by (route, code) (rate(paasmeter_collector_http_requests_total`+rate+`))`, "{{route}} {{code}}"))
	b.graph("Collector 5xx ratio", "Share of the tenants' listener's answers that were 5xx, by route.", "percentunit", 12,
		q("A", `sum by (route) (rate(paasmeter_collector_http_requests_total{code=~"5.."}`+rate+`)) / sum by (route) (rate(paasmeter_collector_http_requests_total`+rate+`))`, "{{route}}"))

	b.row("Metering store")
	b.graph("Store readiness (/readyz answers)",
		"Answers of /readyz on the tenants' listener by status code: 503 means the metering store did not answer (or the collector is draining). There is no readiness gauge; this is what load balancers' checks saw.",
		"reqps", 8,
		q("A", `sum by (code) (rate(paasmeter_collector_http_requests_total{route="/readyz"}`+rate+`))`, "{{code}}"))
	b.graph("Store operation errors", "Failed metering store operations per second, by operation.", "ops", 8,
		q("A", `sum by (operation) (rate(paasmeter_store_operation_errors_total`+rate+`))`, "{{operation}}"))
	b.graph("Store operation latency (p99)", "99th percentile of metering store operations, by operation.", "s", 8,
		q("A", `histogram_quantile(0.99, sum by (le, operation) (rate(paasmeter_store_operation_duration_seconds_bucket`+rate+`)))`, "{{operation}}"))

	b.row("Agents and containers")
	b.stat("Agents reporting", "Agents whose metrics Prometheus scraped (each exports paasmeter_agent_tracked_containers once).", "short", 6,
		q("A", `count(paasmeter_agent_tracked_containers)`, "agents"))
	b.stat("Containers running", "Replicas in state running.", "short", 6,
		q("A", `sum(paasmeter_runtime_replicas{`+app+`, state="running"})`, "running"))
	b.stat("Replicas restarting", "Replicas in states backoff, unhealthy or failing.", "short", 6,
		q("A", `sum(paasmeter_runtime_replicas{`+app+`, state=~"backoff|unhealthy|failing"})`, "restarting"))
	b.stat("Restarts (1h)", "Replicas restarted over the last hour (crash, OOM kill, failed health check).", "short", 6,
		q("A", `sum(increase(paasmeter_runtime_restarts_total{`+app+`}[1h]))`, "restarts"))
	b.graph("Replicas by state", "Replicas the specs ask for, by state.", "short", 12,
		q("A", `sum by (state) (paasmeter_runtime_replicas{`+app+`})`, "{{state}}"))
	b.graph("Restarts by app", "Restarts per second, by tenant and app.", "short", 12,
		q("A", `sum by (tenant, app) (rate(paasmeter_runtime_restarts_total{`+app+`}`+rate+`))`, "{{tenant}}/{{app}}"))
	b.graph("Tracked containers by node", "Runs each agent is metering.", "short", 24,
		q("A", `sum by (node) (paasmeter_agent_tracked_containers)`, "{{node}}"))
	return b.DashboardBuilder
}

func usage() *dashboard.DashboardBuilder {
	b := newBoard("paasmeter-usage", "paasmeter / Institution usage and month to date",
		"Operators only. Usage records ingested and rated per institution, containers' CPU and memory, and quota use. "+
			"Month-to-date amounts in money are not exported as metrics: the invoices are (GET /api/v1/tenants/{tenant}/invoices).",
		"container_cpu_usage_seconds_total")
	app := sel("tenant", "app", "env")

	b.row("Usage records")
	b.graph("Usage records ingested by tenant", "Usage records the collector received per second, by tenant and outcome.", "short", 12,
		q("A", `sum by (tenant, outcome) (rate(paasmeter_collector_records_total{kind="usage", `+sel("tenant")+`}`+rate+`))`, "{{tenant}} {{outcome}}"))
	b.graph("Records rated this month by tenant", "Records of the month so far that billing rated (last reconciliation).", "short", 12,
		q("A", `sum by (tenant) (paasmeter_reconcile_records{stage="rated", `+sel("tenant")+`})`, "{{tenant}}"))
	b.table("Reconciliation of the month", "Records accepted, stored and rated per institution and period, and the days on which they differ (anything but 0 needs a look).", "short", 24,
		qi("A", `sum by (tenant, period, stage) (paasmeter_reconcile_records{`+sel("tenant")+`})`),
		qi("B", `sum by (tenant, period) (paasmeter_reconcile_difference_days{`+sel("tenant")+`})`))

	b.row("Containers")
	b.graph("CPU by app", "CPU cores used, by tenant and app (agent's cAdvisor-style metrics).", "short", 12,
		q("A", `sum by (tenant, app) (rate(container_cpu_usage_seconds_total{`+app+`}`+rate+`))`, "{{tenant}}/{{app}}"))
	b.graph("Memory working set by app", "Working set bytes, by tenant and app.", "bytes", 12,
		q("A", `sum by (tenant, app) (container_memory_working_set_bytes{`+app+`})`, "{{tenant}}/{{app}}"))
	b.graph("CPU throttling by app", "Share of CFS periods in which the app's containers were throttled.", "percentunit", 12,
		q("A", `sum by (tenant, app) (rate(container_cpu_cfs_throttled_periods_total{`+app+`}`+rate+`)) / sum by (tenant, app) (rate(container_cpu_cfs_periods_total{`+app+`}`+rate+`))`, "{{tenant}}/{{app}}"))
	b.graph("Network by app", "Bytes received and transmitted per second, by tenant and app.", "Bps", 12,
		q("A", `sum by (tenant, app) (rate(container_network_receive_bytes_total{`+app+`}`+rate+`))`, "{{tenant}}/{{app}} rx"),
		q("B", `sum by (tenant, app) (rate(container_network_transmit_bytes_total{`+app+`}`+rate+`))`, "{{tenant}}/{{app}} tx"))

	b.row("Quotas")
	b.graph("Quota use by tenant", "What each institution's spec asks for, as a share of its quota, by resource (quotas of 0 are left out).", "percentunit", 24,
		q("A", `paasmeter_runtime_quota_requested{`+sel("tenant")+`} / (paasmeter_runtime_quota{`+sel("tenant")+`} > 0)`, "{{tenant}} {{resource}}"))
	return b.DashboardBuilder
}

func slaDashboard() *dashboard.DashboardBuilder {
	b := newBoard("paasmeter-sla", "paasmeter / SLA and error budget",
		"Operators only. The SLI and SLA of production apps (deploy/prometheus/rules/sla.rules.yml, docs/slo.md). "+
			"The SLA series carry no env label: they are about env=prod only, so the env variable does not narrow them.",
		"paasmeter_runtime_probes_total")
	app := sel("tenant", "app")

	b.row("Month to date")
	b.stat("Availability month to date by tenant", "Each institution's availability in the month to date (collector's minute counts): what credits are computed from.", "percent", 12,
		q("A", `paasmeter_sla_availability_percent{`+sel("tenant")+`}`, "{{tenant}}"))
	b.stat("Error budget remaining (30 days)", "Share of the 30-day error budget left, per app: 1 - (1 - availability over 30 days) / error budget.", "percentunit", 12,
		q("A", `1 - (1 - paasmeter_sla:availability:ratio30d{`+app+`}) / on () group_left () paasmeter_sla:error_budget:ratio`, "{{tenant}}/{{app}}"))
	b.graph("Availability month to date by app", "paasmeter_sla:availability:ratio_month: (eligible - platform-caused down minutes) / eligible minutes.", "percentunit", 12,
		q("A", `paasmeter_sla:availability:ratio_month{`+app+`}`, "{{tenant}}/{{app}}"))
	b.graph("SLA minutes by state", "Minutes of the month to date of the selected production apps, by state.", "m", 12,
		q("A", `sum by (state) (paasmeter_sla_minutes{`+app+`})`, "{{state}}"))

	b.row("Burn rate")
	b.graph("Probe error ratio", "Share of failed probes outside maintenance over each alert window.", "percentunit", 12,
		q("A", `paasmeter_sla:probe_error_ratio:rate5m{`+app+`}`, "{{tenant}}/{{app}} 5m"),
		q("B", `paasmeter_sla:probe_error_ratio:rate1h{`+app+`}`, "{{tenant}}/{{app}} 1h"),
		q("C", `paasmeter_sla:probe_error_ratio:rate6h{`+app+`}`, "{{tenant}}/{{app}} 6h"),
		q("D", `paasmeter_sla:probe_error_ratio:rate1d{`+app+`}`, "{{tenant}}/{{app}} 1d"))
	b.graph("Burn rate (1h and 6h)", "Error ratio divided by the error budget: 14.4 over 1h (and 5m) or 6 over 6h (and 30m) pages.", "short", 12,
		q("A", `paasmeter_sla:probe_error_ratio:rate1h{`+app+`} / on () group_left () paasmeter_sla:error_budget:ratio`, "{{tenant}}/{{app}} 1h"),
		q("B", `paasmeter_sla:probe_error_ratio:rate6h{`+app+`} / on () group_left () paasmeter_sla:error_budget:ratio`, "{{tenant}}/{{app}} 6h"))
	b.graph("Maintenance windows", "1 while a maintenance window covers the app (its minutes leave the SLI; SLO alerts are silenced).", "short", 12,
		q("A", `paasmeter_sla_maintenance_active{`+app+`}`, "{{tenant}}/{{app}}"))
	b.graph("Probes by result", "Health probes of the selected apps per second, by result (all envs).", "short", 12,
		q("A", `sum by (env, result) (rate(paasmeter_runtime_probes_total{`+sel("tenant", "app", "env")+`}`+rate+`))`, "{{env}} {{result}}"))
	return b.DashboardBuilder
}

func pipeline() *dashboard.DashboardBuilder {
	b := newBoard("paasmeter-pipeline", "paasmeter / Pipeline health",
		"Operators only. Records from the agents' spools to the collector and the metering store: read, shipped, stored, dead-lettered, lag and queues.",
		"paasmeter_agent_log_lines_total")

	b.row("Throughput")
	b.graph("Log lines read and shipped by the agents", "Log lines per second by outcome (read, shipped, rate_limited, rejected, truncated).", "short", 12,
		q("A", `sum by (outcome) (rate(paasmeter_agent_log_lines_total{`+sel("tenant", "app", "env")+`}`+rate+`))`, "{{outcome}}"))
	b.graph("Records shipped by the agents", "Records the collector acknowledged per second, by kind and outcome.", "short", 12,
		q("A", `sum by (kind, outcome) (rate(paasmeter_agent_shipped_records_total`+rate+`))`, "{{kind}} {{outcome}}"))
	b.graph("Records received by the collector", "Records per second by kind and outcome (new, duplicate, rejected, rate_limited).", "short", 12,
		q("A", `sum by (kind, outcome) (rate(paasmeter_collector_records_total{`+sel("tenant")+`}`+rate+`))`, "{{kind}} {{outcome}}"))
	b.graph("Records stored", "Records the batching writer stored per second, by kind.", "short", 12,
		q("A", `sum by (kind) (rate(paasmeter_store_batch_flushed_records_total`+rate+`))`, "{{kind}}"))

	b.row("Failures")
	b.graph("Dead-lettered records", "Records moved to the agents' dead-letter spools per second, and entries held there.", "short", 12,
		q("A", `sum by (instance) (rate(paasmeter_agent_dead_letters_total`+rate+`))`, "{{instance}} per second"),
		q("B", `sum by (instance) (paasmeter_agent_dead_letter_entries)`, "{{instance}} held"))
	b.graph("Ship errors by reason", "Failed delivery attempts of the agents per second, by reason.", "short", 12,
		q("A", `sum by (reason) (rate(paasmeter_agent_ship_errors_total`+rate+`))`, "{{reason}}"))
	b.graph("Throttled and refused batches", "Batches the collector answered 429 (by kind and reason) and appends the batching writer refused.", "short", 12,
		q("A", `sum by (kind, reason) (rate(paasmeter_collector_throttled_requests_total`+rate+`))`, "throttled {{kind}} {{reason}}"),
		q("B", `sum by (kind, reason) (rate(paasmeter_store_batch_rejected_appends_total`+rate+`))`, "refused {{kind}} {{reason}}"))
	b.graph("Spool write errors", "Failed writes of produced records to the agents' spools (full disk).", "short", 12,
		q("A", `sum by (instance) (rate(paasmeter_agent_spool_write_errors_total`+rate+`))`, "{{instance}}"),
		q("B", `sum by (instance) (rate(paasmeter_agent_log_spool_waits_total`+rate+`))`, "{{instance}} log waits"))

	b.row("Lag and queues")
	b.graph("Spool lag", "Age of the oldest unacknowledged spool entry, per agent.", "s", 8,
		q("A", `max by (instance) (paasmeter_agent_spool_oldest_age_seconds)`, "{{instance}}"))
	b.graph("Spool size", "Unacknowledged spool entries and bytes, per agent.", "short", 8,
		q("A", `sum by (instance) (paasmeter_agent_spool_entries)`, "{{instance}} entries"))
	b.graph("Spool bytes", "Bytes of spool segments holding unacknowledged entries, per agent.", "bytes", 8,
		q("A", `sum by (instance) (paasmeter_agent_spool_bytes)`, "{{instance}}"))
	b.graph("Batching queue", "Records waiting for a flush of the batching writer, and usage batches in flight at the collector.", "short", 8,
		q("A", `sum by (instance) (paasmeter_store_batch_queued_records)`, "{{instance}} queued"),
		q("B", `sum by (instance) (paasmeter_collector_inflight_batches)`, "{{instance}} in flight"))
	b.graph("Flushes by outcome", "Inserts of the batching writer per second, by kind and outcome.", "ops", 8,
		q("A", `sum by (kind, outcome) (rate(paasmeter_store_batch_flushes_total`+rate+`))`, "{{kind}} {{outcome}}"))
	b.graph("Flush and ship latency (p99)", "99th percentile of a batching writer flush (by kind) and of the collector acknowledging an agent's batch.", "s", 8,
		q("A", `histogram_quantile(0.99, sum by (le, kind) (rate(paasmeter_store_batch_flush_duration_seconds_bucket`+rate+`)))`, "flush {{kind}}"),
		q("B", `histogram_quantile(0.99, sum by (le) (rate(paasmeter_agent_ship_duration_seconds_bucket`+rate+`)))`, "ship"))
	b.graph("Reconciliation lag", "Seconds since a reconciliation last completed.", "s", 24,
		q("A", `time() - max(paasmeter_reconcile_last_success_timestamp_seconds)`, "since last reconciliation"))
	return b.DashboardBuilder
}

func logsDashboard() *dashboard.DashboardBuilder {
	b := newBoard("paasmeter-logs", "paasmeter / Logs",
		"Operators only. Container logs through the collector's Loki-compatible API, and log ingestion rates. "+
			"The collector answers one tenant per query, named by the datasource's X-Scope-OrgID header "+
			"(PAASMETER_GRAFANA_LOG_TENANT in the provisioning file); stream labels carry no tenant, so the tenant variable narrows the rates only.",
		"paasmeter_agent_log_lines_total")

	b.WithPanel(logs.NewPanelBuilder().Id(b.id()).Title("Container logs").
		Description(`Lines of the selected apps and envs of the datasource's tenant. container=~".+" keeps the selector valid when every app is selected (a selector needs a matcher that does not match the empty value).`).
		Datasource(lokiDS).Span(24).Height(14).
		ShowTime(true).WrapLogMessage(true).EnableLogDetails(true).SortOrder(common.LogsSortOrderDescending).
		WithTarget(logQuery{RefID: "A", Datasource: lokiDS, Expr: `{app=~"$app", env=~"$env", container=~".+"}`, MaxLines: 1000}))

	b.graph("Log lines ingested by tenant", "Log lines the collector received per second, by tenant and outcome (new, duplicate, rejected, rate_limited).", "short", 12,
		q("A", `sum by (tenant, outcome) (rate(paasmeter_collector_records_total{kind="logs", `+sel("tenant")+`}`+rate+`))`, "{{tenant}} {{outcome}}"))
	b.graph("Loki pushes rate-limited", "Loki push requests per second answered 429, by tenant; and accepted ones.", "reqps", 12,
		q("A", `sum by (tenant) (rate(paasmeter_collector_loki_pushes_total{outcome="rate_limited", `+sel("tenant")+`}`+rate+`))`, "{{tenant}} rate_limited"),
		q("B", `sum by (tenant) (rate(paasmeter_collector_loki_pushes_total{outcome="accepted", `+sel("tenant")+`}`+rate+`))`, "{{tenant}} accepted"))
	b.graph("Agent log lines by app", "Lines per second the agents read and dropped at the agent (rate_limited), by app.", "short", 12,
		q("A", `sum by (tenant, app, outcome) (rate(paasmeter_agent_log_lines_total{`+sel("tenant", "app", "env")+`, outcome=~"read|rate_limited"}`+rate+`))`, "{{tenant}}/{{app}} {{outcome}}"))
	b.graph("Log lines deleted by retention", "Lines deleted because they outlived their tenant's log retention, per second.", "short", 12,
		q("A", `sum by (tenant) (rate(paasmeter_collector_log_lines_deleted_total{`+sel("tenant")+`}`+rate+`))`, "{{tenant}}"))
	return b.DashboardBuilder
}

// logQuery is a Loki target in the JSON Grafana reads. It is written here
// rather than with the SDK's loki package: four fields, and the import path
// alone reads like the AGPL Loki modules the project never imports.
type logQuery struct {
	RefID      string                  `json:"refId"`
	Datasource dashboard.DataSourceRef `json:"datasource"`
	Expr       string                  `json:"expr"`
	MaxLines   int64                   `json:"maxLines"`
}

// ImplementsDataqueryVariant marks logQuery as a panel target.
func (logQuery) ImplementsDataqueryVariant() {}

// DataqueryType is Grafana's name of the target's datasource type.
func (logQuery) DataqueryType() string { return "loki" }

// Equals reports whether other is the same query.
func (q logQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(logQuery)
	return ok && o.RefID == q.RefID && o.Expr == q.Expr && o.MaxLines == q.MaxLines && *o.Datasource.Uid == *q.Datasource.Uid
}

// Validate reports a query Grafana could not run.
func (q logQuery) Validate() error {
	if q.Expr == "" {
		return fmt.Errorf("loki target %s: no expression", q.RefID)
	}
	return nil
}

// Build makes logQuery its own builder.
func (q logQuery) Build() (variants.Dataquery, error) { return q, q.Validate() }
