package agent

import (
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/meter"
	"github.com/paasmeter/paasmeter/usage"
)

// TestContainerMetricsAreLabelledAsTheKubeletsCAdvisorOnAKubernetesNode
// checks the labels of the container metrics on both node kinds: the
// institution's and the container's name on Docker; on Kubernetes also the
// pod's namespace and name, with the container's name in the pod's spec, as
// the kubelet's cAdvisor has them. Two runs of one container (the one that
// just ended, not closed yet, and its restart) have the same labels there:
// the scrape has the newest run's series, and does not fail.
func TestContainerMetricsAreLabelledAsTheKubeletsCAdvisorOnAKubernetesNode(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	pod := &engine.PodRef{Namespace: "caami-shop-prod", Pod: "web-0", Container: "server"}
	run := func(id, name string, start time.Time, p *engine.PodRef) *tracked {
		return &tracked{c: engine.Container{ID: id, Name: name, Tenant: "caami", Project: "shop", App: "web", Env: usage.EnvProd,
			StartedAt: start, Pod: p}}
	}
	base := map[string]string{"tenant": "caami", "project": "shop", "app": "web", "env": "prod", "node": "node-1"}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(base)
		maps.Copy(m, extra)
		return m
	}
	for _, tc := range []struct {
		kind string
		runs []*tracked
		want map[string]string
	}{
		{KindDocker, []*tracked{run("c1", "caami-shop-web-1", t0, nil)}, with(map[string]string{"container": "caami-shop-web-1"})},
		{KindKubernetes, []*tracked{run("c1", "web-0/server/1", t0.Add(time.Minute), pod), run("c0", "web-0/server/0", t0, pod)},
			with(map[string]string{"container": "server", "namespace": "caami-shop-prod", "pod": "web-0"})},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Kind, cfg.Node, cfg.SpoolDir = tc.kind, "node-1", t.TempDir()
			reg := prometheus.NewRegistry()
			m, err := newContainerMetrics(reg, cfg.Node, &Agent{o: Options{Config: cfg}, log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			// The newest run's CPU is 1 s, the older one's 5 s.
			for i, r := range tc.runs {
				m.observe(r, cgroups.Stats{CPUUsageNs: uint64(1+4*i) * 1e9}, meter.Sample{})
			}
			m.oom.WithLabelValues(m.labels(tc.runs[0].c)...).Inc()
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for _, mf := range mfs {
				name := mf.GetName()
				if name != "container_cpu_usage_seconds_total" && name != "container_oom_events_total" {
					continue
				}
				if len(mf.GetMetric()) != 1 {
					t.Fatalf("%s: %d series, want 1: %v", name, len(mf.GetMetric()), mf.GetMetric())
				}
				s := mf.GetMetric()[0]
				got := map[string]string{}
				for _, l := range s.GetLabel() {
					got[l.GetName()] = l.GetValue()
				}
				if !maps.Equal(got, tc.want) {
					t.Errorf("%s labels %v, want %v", name, got, tc.want)
				}
				if v := s.GetCounter().GetValue(); v != 1 {
					t.Errorf("%s = %g, want the newest run's 1", name, v)
				}
				seen++
			}
			if seen != 2 {
				t.Errorf("gathered %d of the two families", seen)
			}
		})
	}
}
