package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/metric"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/meter"
)

// containerLabels are the only labels of container metrics: never every
// Docker label, which is how cAdvisor's cardinality explodes.
var containerLabels = []string{"tenant", "project", "app", "env", "container", "node"}

// podLabels are what a Kubernetes node's container metrics add, as the
// kubelet's cAdvisor labels its own: there the container label is the
// container's name in its pod's spec, so that queries written for the
// kubelet's metrics (by namespace, pod and container) read the agent's.
var podLabels = []string{"namespace", "pod"}

// containerMetrics exposes the latest sample of every tracked container under
// cAdvisor's names, plus the agent's own health.
type containerMetrics struct {
	agent *Agent
	node  string
	// pods says the containers are Kubernetes pods' (podLabels).
	pods bool

	mu     sync.Mutex
	latest map[string]latest // by container id

	cpu, rx, tx, ws, limit, start *prometheus.Desc
	oom                           *prometheus.CounterVec
	spoolErrors                   prometheus.Counter
	unknownEnds                   prometheus.Counter
	closedFromParent, adoptedLate prometheus.Counter
	orphanParents                 prometheus.Counter
	statsFallbacks                prometheus.Counter
	cfsPeriods, cfsThrottled      *prometheus.Desc
	cfsThrottledSecs, memUsage    *prometheus.Desc
	fsReads, fsWrites, processes  *prometheus.Desc
	tracked                       *prometheus.Desc
	// The spool's room: its filesystem's free and total bytes, read at
	// scrape time, and the configured bound (agent.spool_max_bytes).
	spoolFSFree, spoolFSSize, spoolMax *prometheus.Desc
}

type latest struct {
	labels []string
	stats  cgroups.Stats
	sample meter.Sample
	start  float64
}

func newContainerMetrics(reg prometheus.Registerer, node string, a *Agent) (*containerMetrics, error) {
	pods := a.o.Config.Kind == KindKubernetes
	names := containerLabels
	if pods {
		names = append(slices.Clip(containerLabels), podLabels...)
	}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, names, nil) }
	m := &containerMetrics{
		agent: a, node: node, pods: pods, latest: map[string]latest{},
		cpu:   d("container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in seconds."),
		rx:    d("container_network_receive_bytes_total", "Cumulative bytes received."),
		tx:    d("container_network_transmit_bytes_total", "Cumulative bytes transmitted."),
		ws:    d("container_memory_working_set_bytes", "Current working set (usage minus inactive file cache), in bytes."),
		limit: d("container_spec_memory_limit_bytes", "Memory limit of the container, in bytes (0: unlimited)."),
		start: d("container_start_time_seconds", "Start time of the container's current run, in seconds since the epoch."),
		oom: metric.CounterVec("container_oom_events_total",
			"OOM kills of the container, counted from the engine's oom events (the container may be gone since).", names...),
		cfsPeriods:       d("container_cpu_cfs_periods_total", "Elapsed CFS enforcement periods."),
		cfsThrottled:     d("container_cpu_cfs_throttled_periods_total", "CFS periods in which the container was throttled."),
		cfsThrottledSecs: d("container_cpu_cfs_throttled_seconds_total", "Time the container was throttled, in seconds."),
		memUsage:         d("container_memory_usage_bytes", "Current memory usage including file cache, in bytes."),
		fsReads:          d("container_fs_reads_bytes_total", "Cumulative bytes read from block devices."),
		fsWrites:         d("container_fs_writes_bytes_total", "Cumulative bytes written to block devices."),
		processes:        d("container_processes", "Current number of processes (pids) in the container."),
		statsFallbacks: metric.Counter("paasmeter_agent_stats_api_fallbacks_total",
			"Samples taken through the engine's slow stats API because the cgroup files could not be read."),
		unknownEnds: metric.Counter("paasmeter_agent_unknown_run_ends_total",
			"Runs closed without a provable end (time or exit code): closed when the agent found them gone, with no died event."),
		closedFromParent: metric.Counter("paasmeter_agent_runs_closed_from_parent_total",
			"Runs that started and ended while no agent ran, billed at the next start from their per-run cgroup parent."),
		adoptedLate: metric.Counter("paasmeter_agent_adopted_past_horizon_total",
			"Running containers first seen after the state horizon (agent.state_horizon) past their start: billed from first sight."),
		orphanParents: metric.Counter("paasmeter_agent_orphan_run_parents_total",
			"Per-run cgroup parents that no run, container or engine event accounts for: left in place, unbilled."),
		spoolErrors: metric.Counter("paasmeter_agent_spool_write_errors_total",
			"Failed writes of produced records to the spool (full disk): the records wait in the outbox."),
		tracked: prometheus.NewDesc("paasmeter_agent_tracked_containers", "Runs being metered.", []string{"node"}, nil),
		// Without labels, like paasmeter_agent_spool_bytes, so that rules can
		// divide one by the other; the scrape's node target label says where.
		spoolFSFree: prometheus.NewDesc("paasmeter_agent_spool_filesystem_free_bytes",
			"Bytes available to unprivileged users on the filesystem of the spool directory (agent.spool_dir), read at scrape time.", nil, nil),
		spoolFSSize: prometheus.NewDesc("paasmeter_agent_spool_filesystem_size_bytes",
			"Size in bytes of the filesystem of the spool directory (agent.spool_dir), read at scrape time.", nil, nil),
		spoolMax: prometheus.NewDesc("paasmeter_agent_spool_max_bytes",
			"The configured bound of the spool on disk (agent.spool_max_bytes): beyond it new records are refused.", nil, nil),
	}
	for _, c := range []prometheus.Collector{m, m.oom, m.spoolErrors, m.unknownEnds, m.closedFromParent, m.adoptedLate, m.orphanParents, m.statsFallbacks} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// labels are a run's container metrics' label values.
func (m *containerMetrics) labels(c engine.Container) []string {
	l := []string{c.Tenant, c.Project, c.App, string(c.Env), c.Name, m.node}
	if m.pods {
		var p engine.PodRef
		if c.Pod != nil {
			p = *c.Pod
			l[4] = p.Container
		}
		l = append(l, p.Namespace, p.Pod)
	}
	return l
}

// observe records the latest sample of a run.
func (m *containerMetrics) observe(t *tracked, st cgroups.Stats, s meter.Sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latest[t.c.ID] = latest{labels: m.labels(t.c), stats: st, sample: s, start: float64(t.c.StartedAt.UnixNano()) / 1e9}
}

// forget drops a finished run's series.
func (m *containerMetrics) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.latest, id)
}

// Describe implements prometheus.Collector.
func (m *containerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.cpu, m.rx, m.tx, m.ws, m.limit, m.start, m.tracked, m.cfsPeriods, m.cfsThrottled,
		m.cfsThrottledSecs, m.memUsage, m.fsReads, m.fsWrites, m.processes, m.spoolFSFree, m.spoolFSSize, m.spoolMax} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *containerMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Two runs may have the same labels for a moment: a container that
	// exited, not closed yet, and its restart (Kubernetes names both by the
	// pod's container), or a container and its replacement of the same name.
	// The newest run's series stands for the container, as in cAdvisor; two
	// series of the same labels would fail the whole scrape.
	cur := make(map[string]latest, len(m.latest))
	for _, l := range m.latest {
		k := strings.Join(l.labels, "\xff")
		if o, ok := cur[k]; !ok || l.start > o.start {
			cur[k] = l
		}
	}
	for _, l := range cur {
		ch <- prometheus.MustNewConstMetric(m.cpu, prometheus.CounterValue, float64(l.stats.CPUUsageNs)/1e9, l.labels...)
		ch <- prometheus.MustNewConstMetric(m.rx, prometheus.CounterValue, float64(l.sample.NetRxBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.tx, prometheus.CounterValue, float64(l.sample.NetTxBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.ws, prometheus.GaugeValue, float64(l.stats.MemoryWorkingSetBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(l.sample.MemoryLimitBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.start, prometheus.GaugeValue, l.start, l.labels...)
		ch <- prometheus.MustNewConstMetric(m.cfsPeriods, prometheus.CounterValue, float64(l.stats.CPUPeriods), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.cfsThrottled, prometheus.CounterValue, float64(l.stats.CPUThrottledPeriods), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.cfsThrottledSecs, prometheus.CounterValue, float64(l.stats.CPUThrottledNs)/1e9, l.labels...)
		ch <- prometheus.MustNewConstMetric(m.memUsage, prometheus.GaugeValue, float64(l.stats.MemoryUsageBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.fsReads, prometheus.CounterValue, float64(l.stats.BlkioReadBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.fsWrites, prometheus.CounterValue, float64(l.stats.BlkioWriteBytes), l.labels...)
		ch <- prometheus.MustNewConstMetric(m.processes, prometheus.GaugeValue, float64(l.stats.Pids), l.labels...)
	}
	ch <- prometheus.MustNewConstMetric(m.tracked, prometheus.GaugeValue, float64(len(m.latest)), m.node)
	m.collectSpoolRoom(ch)
}

// collectSpoolRoom reports the room left for the spool. The filesystem is
// read at every scrape (a statfs is cheap) rather than cached, so that a disk
// filled by something else than the spool shows as soon as Prometheus looks.
func (m *containerMetrics) collectSpoolRoom(ch chan<- prometheus.Metric) {
	cfg := m.agent.o.Config
	ch <- prometheus.MustNewConstMetric(m.spoolMax, prometheus.GaugeValue, float64(cfg.SpoolMaxBytes))
	var st syscall.Statfs_t
	if err := syscall.Statfs(cfg.SpoolDir, &st); err != nil {
		// No series rather than a failed scrape: the rest of the agent's
		// metrics stay readable, and the spool's own write errors still show.
		m.agent.log.Warn("cannot read the free space of the spool's filesystem", "dir", cfg.SpoolDir, "err", err)
		return
	}
	// Bavail, not Bfree: the blocks reserved for root are not the agent's
	// to count on (node_exporter's node_filesystem_avail_bytes is the same).
	bsize := float64(st.Bsize)
	ch <- prometheus.MustNewConstMetric(m.spoolFSFree, prometheus.GaugeValue, float64(st.Bavail)*bsize)
	ch <- prometheus.MustNewConstMetric(m.spoolFSSize, prometheus.GaugeValue, float64(st.Blocks)*bsize)
}

// removeCgroup removes a per-run cgroup parent once its final counters are
// read: the directory in every v1 controller hierarchy, or the v2 one.
func removeCgroup(root, path string) {
	os.Remove(filepath.Join(root, path))
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() {
			os.Remove(filepath.Join(root, e.Name(), path))
		}
	}
}
