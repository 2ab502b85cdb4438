package sla

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/paasmeter/paasmeter/events"
)

// Classify sorts the minutes of [from, to) of one production app into up,
// down (by cause), maintenance, not eligible and future. It is pure: the same
// arguments always give the same result.
//
// evs are the app's events (every type, any order; the caller selects the
// app and the prod environment), including those of a lookback before from so
// the app's state when the period starts is known. windows are the
// maintenance windows that apply to the app (the caller matches their scope).
// from and to are truncated to whole minutes; minutes that had not ended by
// now are Future.
//
// A minute is classified, in this order:
//   - Future when it had not ended by now;
//   - NotEligible when the app was not meant to run during the whole minute:
//     before its first event, after its owner stopped or removed every
//     replica (a stopped or died event with initiator owner, a removed
//     event), until one starts again;
//   - Maintenance when a window covers the minute's start;
//   - Down when, for at least cfg.DownThreshold of it, no replica passed the
//     probe; the cause is the platform when the seconds without any probe data
//     are at least the seconds of failed probes, or when a replica was stopped
//     by the platform, the tenant otherwise;
//   - Up otherwise.
//
// A probe result holds until the replica's next probe, at most
// cfg.ProbeStaleness. Moments without a passing replica are, per replica:
// failed when it has a fresh failed probe, ended on its own (exit, OOM kill,
// the runtime restarting it for failing its health check) or is starting
// after such an end (the agent reporting these proves the node is up);
// killed when the platform stopped it, or it is starting again after that;
// no data otherwise, and also after an end on its own reported for an
// instant the replica already had no data (a node that crashed, its dead
// containers reported once it is back). The app is killed when a replica
// is, else failed when a replica is, else no data. A run of a container the
// agent never probed (an app without a health check) counts as passing
// while it runs.
func Classify(evs []events.Event, windows []Window, from, to, now time.Time, cfg Config) AppMinutes {
	r := newRecorder(cfg.ProbeStaleness)
	sorted := true
	for i := 1; i < len(evs) && sorted; i++ {
		sorted = !evs[i].Time.Before(evs[i-1].Time)
	}
	if sorted {
		for i := range evs {
			r.add(&evs[i])
		}
		return r.classify(windows, from, to, now, cfg)
	}
	// Sort an index rather than the events: they are large, and the caller's.
	type key struct {
		t int64
		i int32
	}
	keys := make([]key, len(evs))
	for i := range evs {
		keys[i] = key{evs[i].Time.UnixNano(), int32(i)}
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.i, b.i)) })
	for _, k := range keys {
		r.add(&evs[k.i])
	}
	return r.classify(windows, from, to, now, cfg)
}

const (
	minuteNs = int64(time.Minute)
	never    = int64(math.MaxInt64)
)

// category is what an app (or one replica) is at an instant. The order is
// the precedence when replicas disagree: one passing replica keeps the app up,
// a platform-stopped replica makes the moment the platform's, a failing one
// the tenant's, and only when none says anything is there no data.
type category uint8

const (
	catIneligible category = iota // not meant to run (no replica the owner wants running)
	catNoData                     // no fresh probe result: node or agent down
	catFailed                     // not passing, and the agent says why: the tenant's
	catKilled                     // stopped by the platform
	catUp                         // passing
	nCategories
)

// endCause is why a replica's run ended.
type endCause uint8

const (
	causeNone     endCause = iota // it never ended (the first run of the slot)
	causeOwn                      // exit, OOM kill, health-check restart: the tenant's
	causeOwner                    // stopped on purpose by the institution
	causePlatform                 // stopped or killed by the platform
	// causeLost: it ended on its own at an instant the agent had stopped
	// probing it. That is what a node crash looks like once the node is back
	// (the engine reports the containers it finds dead), so it proves nothing
	// of the tenant: no data.
	causeLost
)

func causeOf(i events.Initiator) endCause {
	switch i {
	case events.ByOwner:
		return causeOwner
	case events.ByPlatform:
		return causePlatform
	}
	return causeOwn
}

type obsKind uint8

// Probes sort after lifecycle events of the same instant, so a run that
// starts and is probed at once keeps its probe, and a probe at the instant
// a run ends does not revive it.
const (
	obsStart obsKind = iota
	obsEnd
	obsRemove
	obsProbe
)

// observation is a compacted event: a lifecycle event, or a run of
// consecutive probes of one container with the same result, each within the
// staleness of the previous one, which holds from t until until. A month of
// probes every 10 s of a healthy replica is one observation, so classifying
// costs little more than reading the events.
type observation struct {
	t, until int64
	slot     int32
	ctr      int32
	kind     obsKind
	ok       bool
	cause    endCause
}

// container is what the recorder keeps of one container.
type container struct {
	slot   int32
	open   int32 // index of its probe run still open for merging, -1 when none
	last   int64 // time of the latest probe in that run
	probed bool
}

// recorder compacts one app's events, fed in time order, into observations.
// It keeps no event, so the calculator can stream a tenant's month through one
// recorder per app.
type recorder struct {
	staleness    int64
	project, app string
	latest       int64 // latest event time, UnixNano
	slots        map[string]int32
	ctrIndex     map[string]int32
	ctrs         []container
	obs          []observation
}

func newRecorder(staleness time.Duration) *recorder {
	return &recorder{staleness: int64(staleness), latest: math.MinInt64, slots: map[string]int32{}, ctrIndex: map[string]int32{}}
}

// container returns the index of e's container. A container belongs to one
// replica slot for life: the replica name when the runtime set one (so a
// restart in a new container continues the replica), else the container.
func (r *recorder) container(e *events.Event) int32 {
	if i, ok := r.ctrIndex[e.ContainerID]; ok {
		return i
	}
	key := e.Replica
	if key == "" {
		key = "\x00" + e.ContainerID // cannot collide with a replica name
	}
	s, ok := r.slots[key]
	if !ok {
		s = int32(len(r.slots))
		r.slots[key] = s
	}
	i := int32(len(r.ctrs))
	r.ctrs = append(r.ctrs, container{slot: s, open: -1})
	r.ctrIndex[e.ContainerID] = i
	return i
}

// add records e; events must come in time order.
func (r *recorder) add(e *events.Event) {
	t := e.Time.UnixNano()
	r.latest = max(r.latest, t)
	if r.project == "" && r.app == "" {
		r.project, r.app = e.Project, e.App
	}
	ci := r.container(e)
	c := &r.ctrs[ci]
	o := observation{t: t, slot: c.slot, ctr: ci}
	switch e.Type {
	case events.Probe:
		if e.Probe == nil {
			return
		}
		c.probed = true
		if c.open >= 0 && t-c.last <= r.staleness {
			if run := &r.obs[c.open]; run.ok == e.Probe.OK {
				run.until, c.last = t+r.staleness, t
				return
			}
		}
		c.open, c.last = int32(len(r.obs)), t
		o.kind, o.ok, o.until = obsProbe, e.Probe.OK, t+r.staleness
	case events.Started, events.Restarted:
		o.kind = obsStart
	case events.Died, events.Stopped:
		o.kind, o.cause = obsEnd, causeOf(e.Initiator)
	case events.Removed:
		o.kind = obsRemove
	default:
		// created, oom (a died event with the OOM flag follows) and Docker's
		// own health_status: the platform's probe and the run's end say it all.
		return
	}
	if o.kind != obsProbe {
		c.open = -1 // a probe run never spans its container's lifecycle event
	}
	r.obs = append(r.obs, o)
}

// addRun records e, and when e is a probe result, the probe results of its
// container that continue e's run until last, as metering.ProbeRunReader
// collapses them: the run they extend is the one e opened or extended.
func (r *recorder) addRun(e *events.Event, last time.Time) {
	r.add(e)
	l := last.UnixNano()
	if e.Type != events.Probe || e.Probe == nil || l <= e.Time.UnixNano() {
		return
	}
	c := &r.ctrs[r.ctrIndex[e.ContainerID]]
	r.obs[c.open].until, c.last = l+r.staleness, l
	r.latest = max(r.latest, l)
}

type phase uint8

const (
	phaseNone    phase = iota // not seen yet
	phaseRunning              // a run is on
	phaseEnded                // the run ended (cause says how)
	phaseGone                 // removed, or stopped by the owner and removed
)

// slot is the state of one replica.
type slot struct {
	phase   phase
	cur     int32    // the container of the slot's current or latest run, -1 before any
	cause   endCause // how the latest run ended (while running: how the previous one did)
	since   int64    // start of the current run
	endedAt int64
	probe   bool // the current run has a probe result
	ok      bool
	until   int64 // the probe result holds until then
}

// category returns what the replica is at t and the next instant that can
// change without an observation.
func (s *slot) category(t, staleness int64, probed bool) (category, int64) {
	switch s.phase {
	case phaseRunning:
		switch {
		case s.probe && t < s.until:
			if s.ok {
				return catUp, s.until
			}
			return catFailed, s.until
		case !probed:
			return catUp, never
		case !s.probe && t < s.since+staleness:
			// Starting, not probed yet: these moments belong to whoever
			// caused the end this run recovers from (the owner's changes and
			// the app's first start are the tenant's).
			switch s.cause {
			case causePlatform:
				return catKilled, s.since + staleness
			case causeLost:
				return catNoData, s.since + staleness
			}
			return catFailed, s.since + staleness
		}
		return catNoData, never
	case phaseEnded:
		switch s.cause {
		case causeOwner:
			return catIneligible, never
		case causePlatform:
			return catKilled, never
		case causeLost:
			return catNoData, never
		}
		return catFailed, never
	}
	return catIneligible, never
}

// apply moves the replica's state by one observation.
func (s *slot) apply(o *observation) {
	switch o.kind {
	case obsStart:
		// cause keeps how the previous run ended, for the start-up moments.
		s.phase, s.cur, s.since, s.probe = phaseRunning, o.ctr, o.t, false
	case obsEnd:
		if s.cur >= 0 && s.cur != o.ctr {
			return // an older run of the slot, already replaced
		}
		s.phase, s.cur, s.cause, s.endedAt = phaseEnded, o.ctr, o.cause, o.t
	case obsRemove:
		if s.cur >= 0 && s.cur != o.ctr {
			return
		}
		s.cur, s.endedAt = o.ctr, o.t
		if s.phase == phaseEnded && (s.cause == causePlatform || s.cause == causeLost) {
			return // the platform cleaning up after its own stop or a crash: the outage goes on until the app starts again
		}
		s.phase, s.cause = phaseGone, causeOwner
	case obsProbe:
		switch {
		case s.phase == phaseRunning && s.cur == o.ctr:
		case s.phase == phaseRunning:
			return // a leftover of a run the slot has replaced
		case s.cur == o.ctr && o.t <= s.endedAt:
			return // at the instant it ended
		default:
			// First sight of the replica (its start is older than the
			// lookback), or a start we never heard of: a probe proves a run.
			s.phase, s.cur, s.since = phaseRunning, o.ctr, o.t
		}
		s.probe, s.ok, s.until = true, o.ok, o.until
	}
}

// classify runs the recorded observations over [from, to).
func (r *recorder) classify(windows []Window, from, to, now time.Time, cfg Config) AppMinutes {
	from, to = from.Truncate(time.Minute), to.Truncate(time.Minute)
	am := AppMinutes{Project: r.project, App: r.app}
	if to.After(from) {
		am.Total = int64(to.Sub(from) / time.Minute)
	}
	var elapsed int64
	if now.After(from) {
		elapsed = min(am.Total, int64(now.Sub(from)/time.Minute))
	}
	am.Future = am.Total - elapsed
	for _, w := range windows {
		if w.Overlaps(from, to) {
			am.Windows = append(am.Windows, w)
		}
	}
	slices.SortFunc(am.Windows, func(a, b Window) int {
		return cmp.Or(a.Start.Compare(b.Start), a.End.Compare(b.End), cmp.Compare(a.ID, b.ID))
	})

	obsOrder := func(a, b observation) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.kind, b.kind)) }
	if !slices.IsSortedFunc(r.obs, obsOrder) {
		slices.SortStableFunc(r.obs, obsOrder)
	}
	probed := make([]bool, len(r.ctrs))
	for i, c := range r.ctrs {
		probed[i] = c.probed
	}
	tl := timeline{
		slots: make([]slot, len(r.slots)), probed: probed, staleness: int64(cfg.ProbeStaleness),
		from: from.UnixNano(), end: from.UnixNano() + elapsed*minuteNs, cur: math.MinInt64,
		acc: accumulator{from: from.UnixNano(), thr: int64(cfg.DownThreshold), wins: mergeWindows(am.Windows), loc: from.Location(), out: &am},
	}
	for i := range tl.slots {
		tl.slots[i].cur = -1
	}
	for i := range r.obs {
		o := &r.obs[i]
		if o.t >= tl.end {
			break
		}
		tl.advance(o.t)
		s := &tl.slots[o.slot]
		if o.kind == obsEnd && o.cause == causeOwn && s.cur == o.ctr {
			if c, _ := s.category(o.t, tl.staleness, tl.probed[o.ctr]); c == catNoData {
				o.cause = causeLost
			}
		}
		s.apply(o)
	}
	tl.advance(tl.end)
	am.Eligible = am.Up + am.DownPlatform + am.DownTenant
	am.Availability = Availability(am.Eligible, am.DownPlatform)
	return am
}

// meantToRunAt reports whether, by the observations before t, a replica of
// the app runs at t or is down without its owner having stopped it: the
// app is part of a month that starts at t even before a minute of it has
// passed. classify sorts the observations first.
func (r *recorder) meantToRunAt(t int64) bool {
	slots := make([]slot, len(r.slots))
	for i := range slots {
		slots[i].cur = -1
	}
	for i := range r.obs {
		if r.obs[i].t >= t {
			break
		}
		slots[r.obs[i].slot].apply(&r.obs[i])
	}
	for _, s := range slots {
		if s.phase == phaseRunning || (s.phase == phaseEnded && s.cause != causeOwner) {
			return true
		}
	}
	return false
}

// timeline walks time forward over an app's replicas and hands the
// accumulator one segment per stretch in which the app's category holds.
type timeline struct {
	slots     []slot
	probed    []bool // per container
	staleness int64
	from, end int64 // what is classified: [from, end)
	cur       int64 // everything before cur was handed on
	acc       accumulator
}

// advance hands on [cur, target).
func (tl *timeline) advance(target int64) {
	target = min(target, tl.end)
	if target <= tl.from {
		return // the lookback only sets the state at from
	}
	tl.cur = max(tl.cur, tl.from)
	for tl.cur < target {
		cat, next := catIneligible, never
		for i := range tl.slots {
			s := &tl.slots[i]
			c, n := s.category(tl.cur, tl.staleness, s.cur >= 0 && tl.probed[s.cur])
			cat, next = max(cat, c), min(next, n)
		}
		end := min(target, next)
		tl.acc.add(tl.cur, end, cat)
		tl.cur = end
	}
}

// accumulator sums each minute's seconds per category and classifies the
// minute once its last second is in.
type accumulator struct {
	from int64 // start of minute 0
	m    int64 // the minute being summed
	sums [nCategories]int64
	thr  int64
	wins [][2]int64 // merged maintenance windows, ascending
	wi   int
	loc  *time.Location
	out  *AppMinutes
}

// add counts [s, e) as cat; segments come in order without gaps.
func (a *accumulator) add(s, e int64, cat category) {
	for s < e {
		mEnd := a.from + (a.m+1)*minuteNs
		x := min(e, mEnd)
		a.sums[cat] += x - s
		s = x
		if x == mEnd {
			a.minute()
		}
	}
}

func (a *accumulator) minute() {
	start := a.from + a.m*minuteNs
	var down Cause
	switch {
	case a.sums[catIneligible] == minuteNs:
		a.out.NotEligible++
	case a.inWindow(start):
		a.out.Maintenance++
	case a.sums[catFailed]+a.sums[catNoData]+a.sums[catKilled] < a.thr:
		a.out.Up++
	case a.sums[catKilled] > 0 || a.sums[catNoData] >= a.sums[catFailed]:
		a.out.DownPlatform++
		down = CausePlatform
	default:
		a.out.DownTenant++
		down = CauseTenant
	}
	if down != "" {
		t := time.Unix(0, start).In(a.loc)
		if n := len(a.out.Outages); n > 0 && a.out.Outages[n-1].End.Equal(t) && a.out.Outages[n-1].Cause == down {
			o := &a.out.Outages[n-1]
			o.End, o.Minutes = t.Add(time.Minute), o.Minutes+1
		} else {
			a.out.Outages = append(a.out.Outages, Outage{Start: t, End: t.Add(time.Minute), Cause: down, Minutes: 1})
		}
	}
	a.sums = [nCategories]int64{}
	a.m++
}

// inWindow reports whether a window covers t; t only grows between calls.
func (a *accumulator) inWindow(t int64) bool {
	for a.wi < len(a.wins) && a.wins[a.wi][1] <= t {
		a.wi++
	}
	return a.wi < len(a.wins) && a.wins[a.wi][0] <= t
}

// mergeWindows returns the windows' spans, ascending, overlapping ones joined.
func mergeWindows(ws []Window) [][2]int64 {
	spans := make([][2]int64, 0, len(ws))
	for _, w := range ws {
		if w.End.After(w.Start) {
			spans = append(spans, [2]int64{w.Start.UnixNano(), w.End.UnixNano()})
		}
	}
	slices.SortFunc(spans, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	var out [][2]int64
	for _, s := range spans {
		if n := len(out); n > 0 && s[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], s[1])
			continue
		}
		out = append(out, s)
	}
	return out
}
