package node_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/node"
)

// The node serves the Go runtime's and the process's metrics under the same
// names as the collector, so one dashboard reads both.
func TestNodeHasTheCollectorsProcessMetrics(t *testing.T) {
	// Opening a node reaches neither the engine nor the collector.
	eng, err := docker.New("unix:///nonexistent/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	cfg := agent.DefaultConfig()
	cfg.Node, cfg.SpoolDir, cfg.AdminListen = "node-1", t.TempDir(), "127.0.0.1:0"
	n, err := node.Open(node.Options{Config: cfg, Token: "token", Engine: eng, NoCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}()
	want := prometheus.NewRegistry()
	if err := collector.RegisterProcessMetrics(want); err != nil {
		t.Fatal(err)
	}
	got := families(t, n.Registry())
	for name := range families(t, want) {
		if !got[name] {
			t.Errorf("the node's registry lacks %s", name)
		}
	}
}

func families(t *testing.T, g prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}
