package meter_test

import (
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/meter"
	"github.com/paasmeter/paasmeter/usage"
)

var t0 = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

func run(start time.Time) meter.Run {
	return meter.Run{Tenant: "caami", Project: "claims", App: "pricing", Environment: usage.EnvProd, Node: "node-1",
		ContainerID: "abc", RunID: "abc-1", Start: start}
}

// totals sums records per meter and checks each record is valid and that
// windows of each meter tile the run without gap or overlap.
func totals(t *testing.T, recs []usage.Record, now time.Time) map[usage.Meter]int64 {
	t.Helper()
	sum := map[usage.Meter]int64{}
	end := map[usage.Meter]time.Time{}
	lim := usage.DefaultLimits()
	for i := range recs {
		r := &recs[i]
		if ps := usage.Validate(r, i, now, lim); len(ps) > 0 {
			t.Fatalf("record %d invalid: %v", i, ps)
		}
		if e, ok := end[r.Meter]; ok && !e.Equal(r.WindowStart) {
			t.Fatalf("%s: window [%s, %s) does not follow the previous one ending %s", r.Meter, r.WindowStart, r.WindowEnd, e)
		}
		end[r.Meter] = r.WindowEnd
		sum[r.Meter] += r.Quantity
	}
	return sum
}

func TestWindowsAreAlignedToTheMinuteAndClippedToTheRun(t *testing.T) {
	start := t0.Add(20 * time.Second)
	a := meter.New(run(start), time.Minute)
	var recs []usage.Record
	for s := 10 * time.Second; s <= 150*time.Second; s += 10 * time.Second {
		recs = append(recs, a.Observe(meter.Sample{Time: start.Add(s), CPUNs: uint64(s) / 2, MemoryWorkingSetBytes: 1 << 20})...)
	}
	recs = append(recs, a.Close(meter.Sample{Time: start.Add(155 * time.Second), CPUNs: uint64(155*time.Second) / 2, MemoryWorkingSetBytes: 1 << 20})...)
	var windows []string
	for _, r := range recs {
		if r.Meter == usage.MeterContainerSeconds {
			windows = append(windows, r.WindowStart.Format("15:04:05")+"-"+r.WindowEnd.Format("15:04:05"))
		}
	}
	want := []string{"12:00:20-12:01:00", "12:01:00-12:02:00", "12:02:00-12:02:55"}
	if len(windows) != len(want) {
		t.Fatalf("windows %v, want %v", windows, want)
	}
	for i := range want {
		if windows[i] != want[i] {
			t.Fatalf("windows %v, want %v", windows, want)
		}
	}
	if n := len(recs); n != 3*7 {
		t.Errorf("%d records, want 7 meters × 3 windows", n)
	}
	sum := totals(t, recs, t0.Add(time.Hour))
	if sum[usage.MeterContainerSeconds] != 155 || sum[usage.MeterCPU] != int64(155*time.Second)/2 {
		t.Errorf("totals %v, want 155 s and 77.5 s of CPU", sum)
	}
	// 1 MiB held for 155 s; the first window holds 40 s of it.
	var firstMemory int64
	for _, r := range recs {
		if r.Meter == usage.MeterMemory {
			firstMemory = r.Quantity
			break
		}
	}
	if sum[usage.MeterMemory] != 155<<20 || firstMemory != 40<<20 {
		t.Errorf("memory %d byte·s (first window %d), want %d (%d)", sum[usage.MeterMemory], firstMemory, 155<<20, 40<<20)
	}
}

func TestWindowsAddUpExactlyToTheCounters(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := t0.Add(7*time.Second + 123456789)
	a := meter.New(run(start), time.Minute)
	var recs []usage.Record
	now := start
	var cpu, rx uint64
	for range 500 {
		now = now.Add(time.Duration(rng.Int64N(int64(25 * time.Second))))
		cpu += uint64(rng.Int64N(int64(50 * time.Second)))
		rx += uint64(rng.Int64N(1 << 30))
		recs = append(recs, a.Observe(meter.Sample{Time: now, CPUNs: cpu, NetRxBytes: rx, MemoryWorkingSetBytes: uint64(rng.Int64N(1 << 34)),
			MemoryLimitBytes: 1 << 34, CPULimitMillicores: 2000})...)
	}
	end := now.Add(3 * time.Second)
	recs = append(recs, a.Close(meter.Sample{Time: end, CPUNs: cpu, NetRxBytes: rx})...)
	sum := totals(t, recs, end.Add(time.Minute))
	if sum[usage.MeterCPU] != int64(cpu) || sum[usage.MeterNetRx] != int64(rx) {
		t.Errorf("cpu %d, rx %d; want exactly %d and %d", sum[usage.MeterCPU], sum[usage.MeterNetRx], cpu, rx)
	}
	if want := int64((end.Sub(start) + time.Second/2) / time.Second); sum[usage.MeterContainerSeconds] != want {
		t.Errorf("container seconds %d, want the run's %d", sum[usage.MeterContainerSeconds], want)
	}
	// The limits hold from the start to the end of the run: their windows,
	// each rounded, add up to limit × duration rounded once.
	round := func(limit int64) int64 {
		v := new(big.Int).Mul(big.NewInt(limit), big.NewInt(int64(end.Sub(start))))
		v.Add(v, big.NewInt(int64(time.Second/2)))
		return v.Quo(v, big.NewInt(int64(time.Second))).Int64()
	}
	if want := round(2000); sum[usage.MeterCPULimit] != want {
		t.Errorf("cpu limit %d millicore·s, want exactly %d", sum[usage.MeterCPULimit], want)
	}
	if want := round(1 << 34); sum[usage.MeterMemoryLimit] != want {
		t.Errorf("memory limit %d byte·s, want exactly %d", sum[usage.MeterMemoryLimit], want)
	}
}

func TestAShortJobBetweenTwoSamplesIsBilledItsSecondsCPUAndMemory(t *testing.T) {
	// Started at :03.2 and gone at :08.2: the agent saw only the start and die
	// events; the die-time reading of the run's cgroup parent has the CPU and peak.
	start := t0.Add(3200 * time.Millisecond)
	a := meter.New(run(start), time.Minute)
	recs := a.Observe(meter.Sample{Time: start, MemoryWorkingSetBytes: 8 << 20})
	recs = append(recs, a.Close(meter.Sample{Time: start.Add(5 * time.Second), CPUNs: 1_900_000_000, MemoryWorkingSetBytes: 8 << 20})...)
	sum := totals(t, recs, t0.Add(time.Minute))
	if sum[usage.MeterContainerSeconds] != 5 || sum[usage.MeterCPU] != 1_900_000_000 || sum[usage.MeterMemory] != 5*8<<20 {
		t.Errorf("totals %v, want 5 s, 1.9 s CPU and 40 MiB·s", sum)
	}
}

func TestACounterThatGoesBackwardsCountsAsAReset(t *testing.T) {
	a := meter.New(run(t0), time.Minute)
	a.Observe(meter.Sample{Time: t0.Add(10 * time.Second), CPUNs: 1000})
	a.Observe(meter.Sample{Time: t0.Add(20 * time.Second), CPUNs: 300}) // reset: 300 new
	recs := a.Close(meter.Sample{Time: t0.Add(30 * time.Second), CPUNs: 500})
	if sum := totals(t, recs, t0.Add(time.Hour)); sum[usage.MeterCPU] != 1500 {
		t.Errorf("cpu %d, want 1000 + 300 + 200", sum[usage.MeterCPU])
	}
}

// sameRecords fails the test unless got holds want's records, in order.
func sameRecords(t *testing.T, what string, got, want []usage.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func TestTheSameSamplesGiveTheSameRecords(t *testing.T) {
	produce := func() []usage.Record {
		a := meter.New(run(t0.Add(time.Second)), time.Minute)
		var recs []usage.Record
		for i := 1; i <= 20; i++ {
			recs = append(recs, a.Observe(meter.Sample{Time: t0.Add(time.Duration(i) * 10 * time.Second), CPUNs: uint64(i) * 1e9})...)
		}
		return append(recs, a.Close(meter.Sample{Time: t0.Add(205 * time.Second), CPUNs: 21e9})...)
	}
	sameRecords(t, "the second run", produce(), produce())
}

func TestRestoredStateGoesOnWithoutGapOrOverlap(t *testing.T) {
	samples := func(a *meter.Accumulator, from, to int) []usage.Record {
		var recs []usage.Record
		for i := from; i <= to; i++ {
			recs = append(recs, a.Observe(meter.Sample{Time: t0.Add(time.Duration(i) * 7 * time.Second), CPUNs: uint64(i) * 3e8,
				MemoryWorkingSetBytes: uint64(i) << 20})...)
		}
		return recs
	}
	whole := meter.New(run(t0), time.Minute)
	want := append(samples(whole, 1, 40), whole.Close(meter.Sample{Time: t0.Add(290 * time.Second), CPUNs: 41 * 3e8})...)

	first := meter.New(run(t0), time.Minute)
	got := samples(first, 1, 17)
	blob, err := json.Marshal(first.State()) // what the agent saves
	if err != nil {
		t.Fatal(err)
	}
	var st meter.State
	if err := json.Unmarshal(blob, &st); err != nil {
		t.Fatal(err)
	}
	second, err := meter.Restore(st)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, samples(second, 18, 40)...)
	got = append(got, second.Close(meter.Sample{Time: t0.Add(290 * time.Second), CPUNs: 41 * 3e8})...)
	sameRecords(t, "after a restore", got, want)
}

func TestAnAdoptedRunStartsAtItsFirstSample(t *testing.T) {
	a := meter.Adopt(run(t0.Add(-time.Hour)), time.Minute, meter.Sample{Time: t0.Add(30 * time.Second), CPUNs: 5e12})
	recs := a.Close(meter.Sample{Time: t0.Add(90 * time.Second), CPUNs: 5e12 + 6e9})
	sum := totals(t, recs, t0.Add(time.Hour))
	if recs[0].WindowStart != t0.Add(30*time.Second) || sum[usage.MeterCPU] != 6e9 || sum[usage.MeterContainerSeconds] != 60 {
		t.Errorf("first window %s, totals %v; want from :30, 6 s CPU, 60 s", recs[0].WindowStart, sum)
	}
}

// A pod's network namespace outlives its containers' restarts: a restart's
// run is billed what the counters grow by from its first sample, not what
// earlier runs were billed already; its CPU is its own from zero.
func TestARunWithSharedNetworkCountersStartsThemAtItsFirstSample(t *testing.T) {
	r := run(t0)
	r.NetShared = true
	a := meter.New(r, time.Minute)
	recs := a.Observe(meter.Sample{Time: t0.Add(10 * time.Second), CPUNs: 1e9, NetRxBytes: 5 << 20, NetTxBytes: 1 << 20})
	recs = append(recs, a.Observe(meter.Sample{Time: t0.Add(20 * time.Second), CPUNs: 2e9, NetRxBytes: 5<<20 + 300, NetTxBytes: 1<<20 + 40})...)
	recs = append(recs, a.Close(meter.Sample{Time: t0.Add(30 * time.Second), CPUNs: 3e9, NetRxBytes: 5<<20 + 1000, NetTxBytes: 1<<20 + 100})...)
	sum := totals(t, recs, t0.Add(time.Hour))
	if sum[usage.MeterNetRx] != 1000 || sum[usage.MeterNetTx] != 100 || sum[usage.MeterCPU] != 3e9 {
		t.Errorf("totals %v, want 1000 B in, 100 B out, 3 s CPU", sum)
	}
}

func TestAVolumeIsBilledItsSizeForAsLongAsItExists(t *testing.T) {
	v := meter.Volume{Tenant: "caami", Project: "claims", App: "db", Environment: usage.EnvProd, Node: "node-1", Name: "claims-pgdata", SizeBytes: 10 << 30}
	created := t0.Add(45 * time.Second)
	a := meter.NewVolume(v, time.Minute, created)
	recs := a.Advance(t0.Add(100 * time.Second)) // closes [:45, 1:00)
	st := a.State()                              // the agent restarts here
	b := meter.RestoreVolume(st)
	recs = append(recs, b.Advance(t0.Add(150*time.Second))...)
	recs = append(recs, b.Close(t0.Add(170*time.Second))...)
	sum := totals(t, recs, t0.Add(time.Hour))
	if len(recs) != 3 || sum[usage.MeterStorageByteSeconds] != 125*(10<<30) || recs[0].Volume != "claims-pgdata" {
		t.Errorf("%d records, %d byte·s; want 3 windows and 125 s × 10 GiB", len(recs), sum[usage.MeterStorageByteSeconds])
	}
}
