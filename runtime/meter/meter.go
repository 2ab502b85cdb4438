// Package meter turns the samples of one container run into usage records:
// one record per meter per window, windows aligned to the clock (60 s by
// default) and clipped to the run, so a 5-second job is billed 5 seconds.
//
// Counters (CPU time, network bytes) are split across window boundaries by
// linear interpolation between samples and attributed as differences of one
// cumulative value, so the windows of a run always add up exactly to the
// counter's total. Gauges (working set, limits) are integrated over time,
// each sample's value holding until the next sample.
package meter

import (
	"fmt"
	"math/big"
	"math/bits"
	"time"

	"github.com/paasmeter/paasmeter/usage"
)

// Run is what is measured: one start-to-stop of one container.
type Run struct {
	Tenant, Project, App string
	Environment          usage.Environment
	Node                 string
	ContainerID, RunID   string
	// Start is when the run started (the engine's StartedAt).
	Start time.Time
	// NetShared says the run's network counters are not its own from zero:
	// they count a network namespace that began before the run (a pod's,
	// which outlives its containers' restarts). The first sample's network
	// counters are then the run's baseline, and the run is billed what they
	// grow by from there; what the namespace counted before is an earlier
	// run's.
	NetShared bool `json:"net_shared,omitempty"`
}

// Sample is one reading of a run's counters and gauges.
type Sample struct {
	Time time.Time
	// Cumulative counters since the run started.
	CPUNs      uint64
	NetRxBytes uint64
	NetTxBytes uint64
	// Gauges, valid from Time until the next sample.
	MemoryWorkingSetBytes uint64
	MemoryLimitBytes      uint64 // 0 when unlimited: nothing is reserved
	CPULimitMillicores    uint64 // 0 when unlimited
}

type counter int

const (
	cpu counter = iota
	rx
	tx
	nCounters
)

type gauge int

const (
	memUsed gauge = iota
	memLimit
	cpuLimit
	nGauges
)

var counterMeters = [nCounters]usage.Meter{usage.MeterCPU, usage.MeterNetRx, usage.MeterNetTx}

// gaugeMeters and gaugeScale: CPU limits are in millicores and integrate to
// millicore·s; memory in bytes to byte·s.
var gaugeMeters = [nGauges]usage.Meter{usage.MeterMemory, usage.MeterMemoryLimit, usage.MeterCPULimit}

func (s *Sample) counters() [nCounters]uint64 {
	return [nCounters]uint64{s.CPUNs, s.NetRxBytes, s.NetTxBytes}
}

func (s *Sample) gauges() [nGauges]uint64 {
	return [nGauges]uint64{s.MemoryWorkingSetBytes, s.MemoryLimitBytes, s.CPULimitMillicores}
}

// State is everything an Accumulator needs to go on after the agent restarts;
// persist it once the records it produced are durable.
type State struct {
	Run    Run           `json:"run"`
	Window time.Duration `json:"window"`
	// Last is the latest sample as read (raw counters); LastCum the counters
	// corrected for resets.
	Last    Sample            `json:"last"`
	LastCum [nCounters]uint64 `json:"last_cum"`
	// Sampled is false until a real sample arrived: before it, gauges are unknown.
	Sampled bool `json:"sampled"`
	// WindowStart starts the open window; CountersAtStart are the corrected
	// counters attributed up to it; GaugeArea the open window's integrals
	// (value·ns, decimal), with what earlier windows' rounding left.
	WindowStart     time.Time         `json:"window_start"`
	CountersAtStart [nCounters]uint64 `json:"counters_at_start"`
	GaugeArea       [nGauges]string   `json:"gauge_area"`
}

// Accumulator integrates the samples of one run into windowed usage records.
// It is not safe for concurrent use.
type Accumulator struct {
	run     Run
	window  time.Duration
	last    Sample
	lastCum [nCounters]uint64
	// sampled is false while last is the synthetic start of the run, whose
	// gauges are unknown: the first real sample's gauges then cover the time
	// before it.
	sampled bool
	// The open window: its start, the counters attributed up to it, and the
	// integral (value × ns) of each gauge since.
	winStart time.Time
	atStart  [nCounters]uint64
	area     [nGauges]*big.Int
}

// New starts accumulating a run that has just started: counters are zero at
// run.Start. window is the window length (a divisor of an hour, e.g. 60 s).
func New(run Run, window time.Duration) *Accumulator {
	a := &Accumulator{run: run, window: window, last: Sample{Time: run.Start}, winStart: run.Start}
	for i := range a.area {
		a.area[i] = new(big.Int)
	}
	return a
}

// Adopt starts accumulating a run that was already running when the agent
// first saw it and has no saved State: its usage before first is unknown, so
// the first window starts at first.Time.
func Adopt(run Run, window time.Duration, first Sample) *Accumulator {
	a := New(run, window)
	a.last, a.winStart, a.sampled = first, first.Time, true
	a.lastCum = first.counters()
	a.atStart = a.lastCum
	return a
}

// Restore resumes from a saved State.
func Restore(st State) (*Accumulator, error) {
	a := New(st.Run, st.Window)
	a.last, a.lastCum, a.sampled, a.winStart, a.atStart = st.Last, st.LastCum, st.Sampled, st.WindowStart, st.CountersAtStart
	for i, v := range st.GaugeArea {
		if _, ok := a.area[i].SetString(v, 10); !ok {
			return nil, fmt.Errorf("meter: state of run %s: gauge area %q is not an integer", st.Run.RunID, v)
		}
	}
	return a, nil
}

// State returns what Restore needs.
func (a *Accumulator) State() State {
	st := State{Run: a.run, Window: a.window, Last: a.last, LastCum: a.lastCum, Sampled: a.sampled, WindowStart: a.winStart, CountersAtStart: a.atStart}
	for i, v := range a.area {
		st.GaugeArea[i] = v.String()
	}
	return st
}

// Run returns the run being measured.
func (a *Accumulator) Run() Run { return a.run }

// Observe adds a sample and returns the records of every window that closed
// up to it. A sample not after the previous one is ignored, except that a
// sample taken at the very start of the run gives the run its first gauges.
func (a *Accumulator) Observe(s Sample) []usage.Record {
	// One time base: the wall clock, which the window edges, the engine's
	// start and finish times and the records are in. A sample's monotonic
	// reading would make spans between samples disagree with the same spans
	// cut at window edges.
	s.Time = s.Time.Round(0)
	if !a.sampled && a.run.NetShared {
		a.last.NetRxBytes, a.last.NetTxBytes = s.NetRxBytes, s.NetTxBytes
	}
	if !s.Time.After(a.last.Time) {
		if !a.sampled && s.Time.Equal(a.last.Time) {
			a.last.MemoryWorkingSetBytes, a.last.MemoryLimitBytes, a.last.CPULimitMillicores = s.MemoryWorkingSetBytes, s.MemoryLimitBytes, s.CPULimitMillicores
			a.sampled = true
		}
		return nil
	}
	held := a.last.gauges()
	if !a.sampled {
		held = s.gauges()
	}
	raw, prevRaw := s.counters(), a.last.counters()
	var delta [nCounters]uint64
	for i := range raw {
		if raw[i] >= prevRaw[i] {
			delta[i] = raw[i] - prevRaw[i]
		} else {
			// The counter went backwards (a reset): all it shows now was used
			// since the previous sample, as Prometheus' rate() assumes.
			delta[i] = raw[i]
		}
	}
	span := uint64(s.Time.Sub(a.last.Time))
	var out []usage.Record
	from := a.last.Time
	for {
		boundary := a.winStart.Truncate(a.window).Add(a.window)
		if boundary.After(s.Time) {
			a.integrate(held, from, s.Time)
			break
		}
		a.integrate(held, from, boundary)
		var cum [nCounters]uint64
		for i := range cum {
			cum[i] = a.lastCum[i] + mulDiv(delta[i], uint64(boundary.Sub(a.last.Time)), span)
		}
		out = append(out, a.emit(boundary, cum)...)
		from = boundary
	}
	for i := range delta {
		a.lastCum[i] += delta[i]
	}
	a.last, a.sampled = s, true
	return out
}

// Close ends the run with its final sample, taken when the run ended, and
// returns the records of the windows still open, the last one partial.
func (a *Accumulator) Close(final Sample) []usage.Record {
	out := a.Observe(final)
	if a.last.Time.After(a.winStart) {
		out = append(out, a.emit(a.last.Time, a.lastCum)...)
	}
	return out
}

// integrate adds gauge values g, held over [from, to).
func (a *Accumulator) integrate(g [nGauges]uint64, from, to time.Time) {
	if !to.After(from) {
		return
	}
	ns := new(big.Int).SetInt64(int64(to.Sub(from)))
	for i := range a.area {
		a.area[i].Add(a.area[i], new(big.Int).Mul(new(big.Int).SetUint64(g[i]), ns))
	}
}

var (
	nsPerSecond = big.NewInt(int64(time.Second))
	halfSecond  = big.NewInt(int64(time.Second / 2))
)

// emit closes the open window at end, where the corrected counters read cum,
// and returns its records.
func (a *Accumulator) emit(end time.Time, cum [nCounters]uint64) []usage.Record {
	start := a.winStart
	out := make([]usage.Record, 0, len(counterMeters)+len(gaugeMeters)+1)
	add := func(m usage.Meter, q int64) {
		r := usage.Record{
			SchemaVersion: usage.SchemaVersion, Tenant: a.run.Tenant, Project: a.run.Project, App: a.run.App,
			Environment: a.run.Environment, ContainerID: a.run.ContainerID, RunID: a.run.RunID, Node: a.run.Node,
			Meter: m, Quantity: q, WindowStart: start.UTC(), WindowEnd: end.UTC(),
		}
		r.SetID()
		out = append(out, r)
	}
	for i, m := range counterMeters {
		add(m, clamp(cum[i]-a.atStart[i]))
	}
	for i, m := range gaugeMeters {
		// value·ns → value·s, rounded half up; what the rounding left (less
		// than half a unit either way) is carried into the next window, so a
		// run's windows add up to its whole integral rounded once: a limit
		// held over the run sums to exactly limit × duration.
		q := new(big.Int).Add(a.area[i], halfSecond)
		q.Quo(q, nsPerSecond)
		if q.IsInt64() {
			add(m, q.Int64())
			a.area[i].Sub(a.area[i], q.Mul(q, nsPerSecond))
		} else {
			add(m, maxInt64)
			a.area[i].SetInt64(0)
		}
	}
	// Seconds since the run started, rounded at both ends of the window, so the
	// windows of a run add up to its duration rounded to the second.
	add(usage.MeterContainerSeconds, roundSeconds(end.Sub(a.run.Start))-roundSeconds(start.Sub(a.run.Start)))
	a.winStart, a.atStart = end, cum
	return out
}

const maxInt64 = 1<<63 - 1

func clamp(v uint64) int64 {
	if v > maxInt64 {
		return maxInt64
	}
	return int64(v)
}

func roundSeconds(d time.Duration) int64 { return int64((d + time.Second/2) / time.Second) }

// mulDiv returns floor(x·num/den) without overflow; num ≤ den.
func mulDiv(x, num, den uint64) uint64 {
	if den == 0 || num >= den {
		return x
	}
	hi, lo := bits.Mul64(x, num)
	q, _ := bits.Div64(hi, lo, den)
	return q
}
