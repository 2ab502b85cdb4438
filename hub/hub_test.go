package hub

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering/embedded"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
)

// exampleConfig is deploy/examples/paasmeter.yaml over a data directory of
// its own, its file paths resolved from this package's directory, with the
// further old, new replacement pairs applied first.
func exampleConfig(t *testing.T, oldnew ...string) *config.Config {
	t.Helper()
	example, err := os.ReadFile("../deploy/examples/paasmeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pairs := append(oldnew, "data_dir: data", "data_dir: "+filepath.Join(t.TempDir(), "data"),
		"rate_card: deploy/", "rate_card: ../deploy/", "sla_file: deploy/", "sla_file: ../deploy/")
	cfg, err := config.Parse([]byte(strings.NewReplacer(pairs...).Replace(string(example))), "example", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// open opens needs of cfg and returns the hub and the messages it logged.
func open(t *testing.T, cfg *config.Config, needs ...Module) (*Hub, *bytes.Buffer, error) {
	t.Helper()
	var log bytes.Buffer
	h, err := Open(context.Background(), cfg, Options{Clock: clock.System{}, Logger: slog.New(slog.NewTextHandler(&log, nil))}, needs...)
	if err == nil {
		t.Cleanup(func() {
			if err := h.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	return h, &log, err
}

func TestResolveBuildsEachModuleOnceAfterWhatItNeeds(t *testing.T) {
	table := map[Module]module{
		"a": {},
		"b": {deps: []Module{"a"}},
		"c": {deps: []Module{"b", "a"}},
		"d": {deps: []Module{"c", "e"}},
		"e": {deps: []Module{"a"}},
		"f": {},
	}
	for _, c := range []struct {
		needs []Module
		want  []Module
	}{
		{[]Module{"a"}, []Module{"a"}},
		{[]Module{"d"}, []Module{"a", "b", "c", "e", "d"}},
		{[]Module{"e", "c"}, []Module{"a", "e", "b", "c"}},
		{[]Module{"f", "b", "b"}, []Module{"f", "a", "b"}},
	} {
		got, err := resolve(table, c.needs)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("resolve(%v) = %v, %v; want %v", c.needs, got, err, c.want)
		}
	}
}

func TestResolveRefusesUnknownModulesAndCycles(t *testing.T) {
	table := map[Module]module{
		"a":    {deps: []Module{"nope"}},
		"loop": {deps: []Module{"back"}},
		"back": {deps: []Module{"loop"}},
	}
	for need, want := range map[Module]string{
		"nope": `unknown module "nope"`,
		"a":    `unknown module "nope" (needed by "a")`,
		"loop": `module "loop" needs itself`,
	} {
		if _, err := resolve(table, []Module{need}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resolve(%s): %v, want an error saying %s", need, err, want)
		}
	}
}

// TestEveryModuleResolves: the table names no module it lacks, and has no
// cycle, with and without a rate card and an SLA file.
func TestEveryModuleResolves(t *testing.T) {
	for name, cfg := range map[string]*config.Config{
		"rate card and SLA file":      exampleConfig(t),
		"rate card, no SLA file":      exampleConfig(t, "  sla_file: deploy/examples/sla.yaml\n", ""),
		"neither rate card nor files": exampleConfig(t, "rate_card: deploy/examples/ratecard.yaml", `rate_card: ""`, "  sla_file: deploy/examples/sla.yaml\n", ""),
	} {
		h := &Hub{cfg: cfg}
		table := h.modules()
		for m := range table {
			if _, err := resolve(table, []Module{m}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestCloseRunsTheClosersInReverseAndJoinsTheirErrors(t *testing.T) {
	var h Hub
	var closed []int
	errTwo := errors.New("two")
	for i := range 3 {
		h.onClose(func() error {
			closed = append(closed, i)
			if i == 2 {
				return errTwo
			}
			return nil
		})
	}
	if err := h.Close(); !errors.Is(err, errTwo) {
		t.Errorf("Close = %v, want the closer's error", err)
	}
	if !slices.Equal(closed, []int{2, 1, 0}) {
		t.Errorf("closed %v, want 2, 1, 0", closed)
	}
	if err := h.Close(); err != nil || len(closed) != 3 {
		t.Errorf("a second Close: %v, and closed %v: want nothing done", err, closed)
	}
}

// TestOpenBuildsOnlyWhatTheModulesNeed: the maintenance commands open the
// state store alone, the SLA report both stores, and billing without a
// rate card opens nothing.
func TestOpenBuildsOnlyWhatTheModulesNeed(t *testing.T) {
	t.Run("maintenance", func(t *testing.T) {
		cfg := exampleConfig(t)
		h, log, err := open(t, cfg, Maintenance)
		if err != nil {
			t.Fatal(err)
		}
		if h.Maintenance() == nil || h.StateStore() == nil || h.MeteringStore() != nil || h.SLACalculator() != nil {
			t.Errorf("maintenance built state %v, metering %v, SLA calculator %v: want the state store alone", h.StateStore(), h.MeteringStore(), h.SLACalculator())
		}
		if _, err := os.Stat(filepath.Join(cfg.Store.DataDir, embedded.FileName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the metering store's file: %v, want none", err)
		}
		if strings.Contains(log.String(), "metering store opened") || !strings.Contains(log.String(), "state store opened") {
			t.Errorf("log:\n%s\nwant the state store opened, not the metering store", log)
		}
	})
	t.Run("SLA calculator", func(t *testing.T) {
		h, log, err := open(t, exampleConfig(t), SLACalculator)
		if err != nil {
			t.Fatal(err)
		}
		if h.SLACalculator() == nil || h.Billing() != nil || h.RateCard() != nil {
			t.Errorf("the SLA calculator built billing %v, rate card %v: want neither", h.Billing(), h.RateCard())
		}
		if m, s := strings.Index(log.String(), "metering store opened"), strings.Index(log.String(), "state store opened"); m < 0 || s < m {
			t.Errorf("log:\n%s\nwant the metering store opened, then the state store", log)
		}
	})
	t.Run("billing without a rate card", func(t *testing.T) {
		cfg := exampleConfig(t, "rate_card: deploy/examples/ratecard.yaml", `rate_card: ""`)
		if _, _, err := open(t, cfg, Billing); err == nil || !strings.Contains(err.Error(), "billing.rate_card: no rate card configured") {
			t.Fatalf("Open(billing) = %v, want no rate card configured", err)
		}
		if _, err := os.Stat(cfg.Store.DataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the data directory: %v, want none: nothing opens before the rate card", err)
		}
	})
}

func TestCollectorPricesOnlyWithARateCard(t *testing.T) {
	h, _, err := open(t, exampleConfig(t), Collector)
	if err != nil {
		t.Fatal(err)
	}
	if h.CollectorServer() == nil || h.Billing() == nil || h.RateCard() == nil {
		t.Errorf("with a rate card: server %v, billing %v, rate card %v: want all", h.CollectorServer(), h.Billing(), h.RateCard())
	}
	h, _, err = open(t, exampleConfig(t, "rate_card: deploy/examples/ratecard.yaml", `rate_card: ""`), Collector)
	if err != nil {
		t.Fatal(err)
	}
	if h.CollectorServer() == nil || h.Billing() != nil || h.RateCard() != nil || h.SLACalculator() == nil {
		t.Errorf("without a rate card: server %v, billing %v, rate card %v, SLA calculator %v: want a server and an SLA calculator, no billing",
			h.CollectorServer(), h.Billing(), h.RateCard(), h.SLACalculator())
	}
}

// TestOpenReturnsTheFailingModulesError: a store that cannot open stops
// Open with its error, after the modules built before it are closed.
func TestOpenReturnsTheFailingModulesError(t *testing.T) {
	cfg := exampleConfig(t)
	// A directory where the state store's database file goes.
	if err := os.MkdirAll(filepath.Join(cfg.Store.DataDir, stateembedded.FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	h, log, err := open(t, cfg, Collector)
	if err == nil || !strings.HasPrefix(err.Error(), "store.state_dsn: ") || h != nil {
		t.Fatalf("Open = %v, %v; want the state store's error and no hub", h, err)
	}
	if !strings.Contains(log.String(), "metering store opened") {
		t.Errorf("log:\n%s\nwant the metering store opened before the state store failed", log)
	}
}
