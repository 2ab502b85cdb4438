package agent_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/spool"
)

// idleEngine is an engine the agent never calls: building an agent and
// scraping its registry needs none (so this test needs no Docker).
type idleEngine struct{ engine.Engine }

// TestSpoolRoomMetricsReadTheSpoolFilesystemAtScrape checks the gauges
// PaasmeterAgentDiskNearlyFull divides: the spool filesystem's free and total
// bytes, and the configured spool bound.
func TestSpoolRoomMetricsReadTheSpoolFilesystemAtScrape(t *testing.T) {
	dir := t.TempDir()
	out, err := spool.Open(filepath.Join(dir, "outgoing"), spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cfg := agent.DefaultConfig()
	cfg.Node, cfg.SpoolDir, cfg.SpoolMaxBytes = "node-1", dir, 64<<20
	reg := prometheus.NewRegistry()
	if _, err := agent.New(agent.Options{Config: cfg, Engine: idleEngine{}, Spool: out, Registry: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	gauges := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			switch n := mf.GetName(); n {
			case "paasmeter_agent_spool_filesystem_free_bytes", "paasmeter_agent_spool_filesystem_size_bytes", "paasmeter_agent_spool_max_bytes":
				if len(mf.GetMetric()) != 1 || len(mf.GetMetric()[0].GetLabel()) != 0 {
					t.Fatalf("%s: %v, want one series without labels (rules divide it by paasmeter_agent_spool_bytes)", n, mf.GetMetric())
				}
				got[n] = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return got
	}
	g := gauges()
	free, size, maxBytes := g["paasmeter_agent_spool_filesystem_free_bytes"], g["paasmeter_agent_spool_filesystem_size_bytes"], g["paasmeter_agent_spool_max_bytes"]
	if len(g) != 3 {
		t.Fatalf("gathered %v, want the three spool room gauges", g)
	}
	if free <= 0 || size <= 0 || free > size {
		t.Errorf("free %v and size %v bytes of the spool's filesystem: want 0 < free ≤ size", free, size)
	}
	if maxBytes != 64<<20 {
		t.Errorf("paasmeter_agent_spool_max_bytes = %v, want the configured %d", maxBytes, 64<<20)
	}

	// Read at every scrape: a spool directory that disappears stops the
	// filesystem series and leaves the bound.
	cfgGone := cfg
	cfgGone.SpoolDir = filepath.Join(dir, "gone")
	reg = prometheus.NewRegistry()
	if _, err := agent.New(agent.Options{Config: cfgGone, Engine: idleEngine{}, Spool: out, Registry: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	if g := gauges(); len(g) != 1 || g["paasmeter_agent_spool_max_bytes"] != 64<<20 {
		t.Errorf("with no spool directory gathered %v, want only paasmeter_agent_spool_max_bytes", g)
	}
}
