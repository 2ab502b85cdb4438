package usage_test

import (
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

func TestCheckBounds(t *testing.T) {
	b := usage.DefaultBounds()
	node := usage.NodeCapacity{CPUs: 8, MemoryBytes: 64 << 30}
	minute := int64(time.Minute)
	tests := map[string]struct {
		meter usage.Meter
		qty   int64
		node  usage.NodeCapacity
		want  string // in the reason; "" when within bounds
	}{
		"8 CPUs busy for the whole window fit":           {usage.MeterCPU, 8 * minute, node, ""},
		"one nanosecond more than 8 CPUs can do":         {usage.MeterCPU, 8*minute + 1, node, "8 CPUs (node CPUs reported)"},
		"2^63-1 cpu_ns in a minute (finding 3)":          {usage.MeterCPU, math.MaxInt64, node, "cpu_ns is more than the bound of 480000000000"},
		"without a report the configured CPUs bound it":  {usage.MeterCPU, 512 * minute, usage.NodeCapacity{}, ""},
		"a report above the configuration is capped":     {usage.MeterCPU, 512*minute + 1, usage.NodeCapacity{CPUs: 4096}, "limits.max_node_cpus"},
		"the node's whole memory for a minute fits":      {usage.MeterMemory, 60 * (64 << 30), node, ""},
		"more than the node's memory":                    {usage.MeterMemory, 60*(64<<30) + 1, node, "node memory reported"},
		"a memory limit above the node's memory fits":    {usage.MeterMemoryLimit, 60 * (128 << 30), node, ""},
		"a memory limit above the configured bound":      {usage.MeterMemoryLimit, 60*(4<<40) + 1, node, "limits.max_node_memory_bytes"},
		"512 CPUs of limit fit":                          {usage.MeterCPULimit, 512 * 1000 * 60, node, ""},
		"more than 512 CPUs of limit":                    {usage.MeterCPULimit, 512*1000*60 + 1, node, "limits.max_node_cpus"},
		"a full 100 Gbit/s link fits":                    {usage.MeterNetRx, 60 * 100e9 / 8, node, ""},
		"more than the link can carry":                   {usage.MeterNetTx, 60*100e9/8 + 1, node, "limits.max_link_bytes_per_second"},
		"a 64 TiB volume fits":                           {usage.MeterStorageByteSeconds, 60 * (64 << 40), node, ""},
		"more than the largest volume":                   {usage.MeterStorageByteSeconds, 60*(64<<40) + 1, node, "limits.max_volume_bytes"},
		"container seconds are bounded by Validate only": {usage.MeterContainerSeconds, 60, node, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := usagetest.Record("caami", "abc", tc.meter, start, tc.qty)
			if tc.meter == usage.MeterStorageByteSeconds {
				r = usagetest.Volume("caami", "data", start, tc.qty)
			}
			ps := usage.CheckBounds(&r, 4, b, tc.node)
			switch {
			case tc.want == "" && len(ps) > 0:
				t.Fatalf("refused: %v", ps)
			case tc.want != "" && (len(ps) != 1 || ps[0].Field != "quantity" || ps[0].Index != 4 || !strings.Contains(ps[0].Reason, tc.want)):
				t.Fatalf("problems %v, want one of records[4].quantity saying %q", ps, tc.want)
			}
		})
	}
}

func TestCheckBoundsNeverOverflows(t *testing.T) {
	b := usage.Bounds{MaxNodeCPUs: math.MaxInt64, MaxNodeMemoryBytes: math.MaxInt64, MaxLinkBytesPerSecond: math.MaxInt64, MaxVolumeBytes: math.MaxInt64}
	for _, m := range usage.Meters {
		r := usagetest.Record("caami", "abc", m.Meter, start, math.MaxInt64)
		r.WindowEnd = r.WindowStart.Add(usage.MaxWindowLimit)
		if m.Meter == usage.MeterContainerSeconds {
			continue
		}
		if ps := usage.CheckBounds(&r, 0, b, usage.NodeCapacity{}); len(ps) > 0 {
			t.Errorf("%s: the largest bounds refused the largest quantity: %v", m.Meter, ps)
		}
	}
}

func TestBoundsValidateNamesTheKey(t *testing.T) {
	b := usage.DefaultBounds()
	if err := b.Validate("limits."); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	b.MaxVolumeBytes = 0
	if err := b.Validate("limits."); err == nil || !strings.Contains(err.Error(), "limits.max_volume_bytes") {
		t.Fatalf("err = %v, want it to name limits.max_volume_bytes", err)
	}
}

// FuzzCheckBounds checks the bound against exact arithmetic: a quantity is
// refused exactly when it is above ⌈capacity × window / unit⌉, a window
// counting as at least a minute, whatever the reported capacity and window,
// and nothing overflows.
func FuzzCheckBounds(f *testing.F) {
	f.Add(int64(math.MaxInt64), int64(time.Minute), int64(8), int64(64<<30))
	f.Add(int64(480000000001), int64(time.Minute), int64(8), int64(0))
	f.Add(int64(1), int64(1), int64(-5), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, qty, window, cpus, mem int64) {
		if qty < 0 || window <= 0 || window > int64(usage.MaxWindowLimit) {
			return // Validate refuses these first
		}
		r := usagetest.Record("caami", "abc", usage.MeterCPU, start, qty)
		r.WindowEnd = r.WindowStart.Add(time.Duration(window))
		b := usage.DefaultBounds()
		node := usage.NodeCapacity{CPUs: cpus, MemoryBytes: mem}
		capCPUs := b.MaxNodeCPUs
		if cpus > 0 && cpus < capCPUs {
			capCPUs = cpus
		}
		span := max(window, int64(time.Minute)) // see TestAShortLastWindowMayCarryASampleIntervalOfUsage
		exact := new(big.Int).Mul(big.NewInt(capCPUs), big.NewInt(span))
		refused := len(usage.CheckBounds(&r, 0, b, node)) > 0
		if want := big.NewInt(qty).Cmp(exact) > 0; refused != want {
			t.Fatalf("cpu_ns %d in %d ns on %d CPUs: refused %v, want %v", qty, window, capCPUs, refused, want)
		}
		r.Meter = usage.MeterMemory
		r.SetID()
		capMem := b.MaxNodeMemoryBytes
		if mem > 0 && mem < capMem {
			capMem = mem
		}
		exact.Mul(big.NewInt(capMem), big.NewInt(span))
		exact.Add(exact, big.NewInt(int64(time.Second)-1)).Quo(exact, big.NewInt(int64(time.Second)))
		refused = len(usage.CheckBounds(&r, 0, b, node)) > 0
		if want := big.NewInt(qty).Cmp(exact) > 0; refused != want {
			t.Fatalf("memory %d byte·s in %d ns on %d bytes: refused %v, want %v", qty, window, capMem, refused, want)
		}
	})
}

// TestAShortLastWindowMayCarryASampleIntervalOfUsage: a run's last window
// can be milliseconds long yet hold the CPU its counter gained since the
// previous sample (the chaos test's 6 ms window with 33.6 ms of CPU on 2
// CPUs); it is bounded as a minute, so real usage is never refused.
func TestAShortLastWindowMayCarryASampleIntervalOfUsage(t *testing.T) {
	r := usagetest.Record("caami", "abc", usage.MeterCPU, start, 33_645_971)
	r.WindowEnd = r.WindowStart.Add(6 * time.Millisecond)
	if ps := usage.CheckBounds(&r, 0, usage.DefaultBounds(), usage.NodeCapacity{CPUs: 2}); len(ps) > 0 {
		t.Fatalf("a short last window refused: %v", ps)
	}
	r.Quantity = 2*int64(time.Minute) + 1
	if ps := usage.CheckBounds(&r, 0, usage.DefaultBounds(), usage.NodeCapacity{CPUs: 2}); len(ps) != 1 {
		t.Fatalf("more than 2 CPUs give in a minute was accepted in a short window: %v", ps)
	}
}

// TestALongWindowIsBoundedByItsWholeLength: a window of 40 minutes (an
// agent's window may be up to an hour) holds 40 minutes of the node's every
// CPU, not one minute's.
func TestALongWindowIsBoundedByItsWholeLength(t *testing.T) {
	r := usagetest.Record("caami", "abc", usage.MeterCPU, start, 2*int64(40*time.Minute))
	r.WindowEnd = r.WindowStart.Add(40 * time.Minute)
	if ps := usage.CheckBounds(&r, 0, usage.DefaultBounds(), usage.NodeCapacity{CPUs: 2}); len(ps) > 0 {
		t.Fatalf("2 CPUs busy for a 40-minute window refused: %v", ps)
	}
	r.Quantity++
	if ps := usage.CheckBounds(&r, 0, usage.DefaultBounds(), usage.NodeCapacity{CPUs: 2}); len(ps) != 1 || !strings.Contains(ps[0].Reason, "bound of 4800000000000") {
		t.Fatalf("a nanosecond more than 2 CPUs give in 40 minutes: %v", ps)
	}
}
