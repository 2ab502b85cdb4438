package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/runtime/kube"
	"github.com/paasmeter/paasmeter/usage"
)

// run is one run of a workload's container as the API server told it; the
// runs a crash loop pushed out of its pod's status are known by their
// number alone (times zero).
type run struct {
	id  string
	pod *corev1.Pod
	kube.Run
}

// runs are every run of w's pods: those their statuses tell, and the
// earlier restarts of a container (a status keeps only the last two).
func (w *workload) runs() []run {
	var out []run
	for i := range w.pods {
		p := &w.pods[i]
		told := map[int32]kube.Run{}
		for _, r := range kube.Runs(p) {
			told[r.N] = r
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.ContainerID == "" && cs.LastTerminationState.Terminated == nil {
				continue // never started
			}
			for n := int32(0); n <= cs.RestartCount; n++ {
				r, ok := told[n]
				if !ok {
					r = kube.Run{Container: cs.Name, N: n, Exited: true}
				}
				out = append(out, run{id: kube.RunID(string(p.UID), cs.Name, n), pod: p, Run: r})
			}
		}
	}
	return out
}

// check compares what the collector tells of the workloads with what the
// test knows of them, and returns every difference. Usage and logs are
// read through the collector's tenant API; events, which that API does not
// serve, and each usage record, from its store (its host path).
func check(ctx context.Context, d deployment, apis map[string]api, all []*workload, begin time.Time) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	from, to := begin.Add(-time.Hour), time.Now().Add(time.Hour)
	st, err := embedded.Open(ctx, d.storeDir)
	if err != nil {
		return []string{fmt.Sprintf("the collector's store: %v", err)}
	}
	defer st.Close()

	for tenant, a := range apis {
		var ws []*workload
		for _, w := range all {
			if w.tenant == tenant {
				ws = append(ws, w)
			}
		}
		mine := func(project, app string) *workload {
			for _, w := range ws {
				if w.project == project && w.app == app {
					return w
				}
			}
			return nil
		}
		billed, err := a.usageByApp(ctx, from, to)
		if err != nil {
			bad("%s: %v", tenant, err)
			continue
		}
		// Each record of a run once: one per run, meter and window.
		type key struct {
			run   string
			meter usage.Meter
		}
		perRun := map[key]int64{}
		perApp := map[string]map[usage.Meter]int64{}
		volumes := map[string][]usage.Record{}
		seen := map[string]bool{}
		err = st.ScanUsage(ctx, metering.UsageFilter{Tenant: tenant, From: from, To: to}, func(r usage.Record) error {
			if mine(r.Project, r.App) == nil {
				return nil
			}
			k := fmt.Sprintf("%s %s %s %s", r.RunID, r.Volume, r.Meter, r.WindowStart.Format(time.RFC3339Nano))
			if seen[k] {
				bad("%s/%s: two records of run %q, volume %q, %s, window %s", r.Project, r.App, r.RunID, r.Volume, r.Meter, r.WindowStart)
			}
			seen[k] = true
			if r.Volume != "" {
				volumes[r.Volume] = append(volumes[r.Volume], r)
			} else {
				perRun[key{r.RunID, r.Meter}] += r.Quantity
			}
			app := r.Project + "/" + r.App
			if perApp[app] == nil {
				perApp[app] = map[usage.Meter]int64{}
			}
			perApp[app][r.Meter] += r.Quantity
			return nil
		})
		if err != nil {
			bad("%s: usage records: %v", tenant, err)
			continue
		}
		evs := map[string][]events.Event{}
		err = st.ScanEvents(ctx, metering.EventFilter{Tenant: tenant, From: from, To: to}, func(e events.Event) error {
			if mine(e.Project, e.App) != nil && e.Type != events.Probe {
				evs[e.RunID] = append(evs[e.RunID], e)
			}
			return nil
		})
		if err != nil {
			bad("%s: events: %v", tenant, err)
			continue
		}

		known := map[string]bool{}
		for _, w := range ws {
			name := w.project + "/" + w.app
			// The API's totals are the records'.
			for m, q := range perApp[name] {
				if got := billed[name][m]; got != q {
					bad("%s: the API bills %d %s, its records add up to %d", name, got, m, q)
				}
			}
			for _, r := range w.runs() {
				known[r.id] = true
				checkRun(bad, d, w, r, evs[r.id], perRun[key{r.id, usage.MeterContainerSeconds}], perRun[key{r.id, usage.MeterCPU}])
			}
			if got, want := billed[name][usage.MeterCPU], int64(w.cpuNs); w.cpu != nil && !near(got, want) {
				bad("%s: billed %d ns of CPU, the kernel counted %d", name, got, want)
			}
			if w.claim != nil {
				vol := w.claim.Namespace + ":" + w.claim.Name
				checkStorage(bad, d, w, volumes[vol])
				delete(volumes, vol)
			}
			checkLogs(ctx, bad, a, w, from, to)
		}
		for vol := range volumes {
			bad("%s: storage of volume %s, which is none of the platform's claims", tenant, vol)
		}
		// No run of the platform's apps that is none of its pods'.
		for id := range evs {
			if !known[id] {
				bad("%s: events of run %s, which no pod of the platform ran: %v", tenant, id, evs[id])
			}
		}
		for k := range perRun {
			if !known[k.run] {
				bad("%s: usage of run %s, which no pod of the platform ran", tenant, k.run)
			}
		}
	}
	return problems
}

// near says whether CPU billed is the kernel's count want: the test's last
// reading and the agent's differ by the pause process's microseconds; a
// run's last sample missed would be hundreds of milliseconds, a run billed
// twice seconds.
func near(billed, want int64) bool {
	tol := 50*int64(time.Millisecond) + want/50
	return billed >= want-tol && billed <= want+tol
}

// checkRun checks one run's events, against how the workload's runs end,
// and its container-seconds.
func checkRun(bad func(string, ...any), d deployment, w *workload, r run, evs []events.Event, secs, cpu int64) {
	name := fmt.Sprintf("%s/%s run %s", w.project, w.app, r.id)
	count := map[events.Type]int{}
	for _, e := range evs {
		count[e.Type]++
		if e.Type == events.Died {
			if e.ExitCode == nil || *e.ExitCode != w.exit || e.OOMKilled != w.oom {
				bad("%s: died %+v, want exit code %d, OOM %v", name, e, w.exit, w.oom)
			}
		}
	}
	want := map[events.Type]int{events.Started: 1}
	if r.Exited {
		want[events.Died] = 1
		if w.oom {
			want[events.OOM] = 1
		}
	}
	for _, typ := range []events.Type{events.Started, events.Died, events.OOM} {
		if count[typ] != want[typ] {
			bad("%s: %d %s events, want %d", name, count[typ], typ, want[typ])
		}
	}
	// A run is billed its CPU to its end where its pod's cgroup counts it
	// alone; elsewhere to its last sample, which a crash loop's runs of a
	// few milliseconds never get (docs/kubernetes-agent.md).
	if cpu == 0 && kube.RunParentEligible(r.pod) {
		bad("%s: no CPU billed", name)
	}
	if !r.Exited {
		return
	}
	if r.StartedAt.IsZero() {
		// Pushed out of its pod's status: its times are gone. A container's
		// runs follow one another, so it ran between the pod's start and the
		// earliest run the status still tells: no longer than that. (A crash
		// loop's run is not always under a sample interval: on a loaded
		// machine "echo; exit 1" took 2 s from start to exit.)
		if bound, ok := unknownRunBound(r.pod, r.Container); ok && time.Duration(secs)*time.Second > bound+d.sampleInterval {
			bad("%s: billed %d container-seconds; its pod's earlier runs all fit in %v", name, secs, bound)
		}
		return
	}
	// The API server's times are whole seconds; the agent bills a run
	// from its start to its end, rounded, within a sample interval.
	ran := r.FinishedAt.Sub(r.StartedAt)
	if diff := time.Duration(secs)*time.Second - ran; diff < -d.sampleInterval || diff > d.sampleInterval {
		bad("%s: billed %d container-seconds; it ran %v (from %s to %s)", name, secs, ran, r.StartedAt, r.FinishedAt)
	}
}

// unknownRunBound is the time from p's start to the start of the earliest
// run of container that p's status tells: every earlier run of it fits in
// that span. ok is false when the status tells no start.
func unknownRunBound(p *corev1.Pod, container string) (bound time.Duration, ok bool) {
	var earliest time.Time
	for _, r := range kube.Runs(p) {
		if r.Container == container && !r.StartedAt.IsZero() && (earliest.IsZero() || r.StartedAt.Before(earliest)) {
			earliest = r.StartedAt
		}
	}
	if earliest.IsZero() || p.Status.StartTime == nil {
		return 0, false
	}
	return earliest.Sub(p.Status.StartTime.Time), true
}

// checkStorage checks the storage billed for w's claim: its capacity from
// its binding (the later of the claim's and its volume's creation) on, in
// windows without gap or overlap, up to a few seconds ago: the claim is
// still there.
func checkStorage(bad func(string, ...any), d deployment, w *workload, recs []usage.Record) {
	name := fmt.Sprintf("%s/%s claim %s", w.project, w.app, w.claim.Name)
	if len(recs) == 0 {
		bad("%s: no storage billed", name)
		return
	}
	capacity := w.claim.Status.Capacity.Storage().Value()
	var total int64
	for i, r := range recs {
		if r.Meter != usage.MeterStorageByteSeconds {
			bad("%s: a record of %s", name, r.Meter)
		}
		if i > 0 && !r.WindowStart.Equal(recs[i-1].WindowEnd) {
			bad("%s: window %s–%s after one ending %s", name, r.WindowStart, r.WindowEnd, recs[i-1].WindowEnd)
		}
		total += r.Quantity
	}
	start := w.claim.CreationTimestamp.Time
	if t := w.volume.CreationTimestamp.Time; t.After(start) {
		start = t
	}
	end := recs[len(recs)-1].WindowEnd
	// Whole seconds of the API server's, and a sample interval of the agent's.
	billed, want := time.Duration(float64(total)/float64(capacity)*float64(time.Second)), end.Sub(start)
	if diff := billed - want; diff < -d.sampleInterval-time.Second || diff > d.sampleInterval+time.Second {
		bad("%s: billed %d byte-seconds, %v of its %d bytes; bound from %s to the last window's end %s: %v", name, total, billed, capacity, start, end, want)
	}
	if lag := time.Since(end); lag > 10*time.Second {
		bad("%s: billed up to %s, %v ago, yet it is still bound", name, end, lag.Round(time.Second))
	}
}

// checkLogs checks that the collector has each run's lines of w, each
// once, in order on each stream.
func checkLogs(ctx context.Context, bad func(string, ...any), a api, w *workload, from, to time.Time) {
	name := w.project + "/" + w.app
	lines, err := a.logs(ctx, w.app, from, to)
	if err != nil {
		bad("%s: logs: %v", name, err)
		return
	}
	got := map[string][]string{}
	ids := map[string]bool{}
	for _, l := range lines {
		if l.Labels[logs.LabelProject] != w.project {
			continue
		}
		if ids[l.ID] {
			bad("%s: line %s twice", name, l.ID)
		}
		ids[l.ID] = true
		got[l.Labels[logs.LabelStream]] = append(got[l.Labels[logs.LabelStream]], l.Line)
	}
	n := len(w.runs())
	for stream, each := range map[string][]string{"stdout": w.stdout, "stderr": w.stderr} {
		var want []string
		for range n {
			want = append(want, each...)
		}
		if !slices.Equal(got[stream], want) {
			bad("%s: %s has %d lines %s, want the %d of %d runs %s", name, stream, len(got[stream]), abbrev(got[stream]), len(want), n, abbrev(want))
		}
	}
}

// abbrev shows the first and last lines of many.
func abbrev(lines []string) string {
	if len(lines) <= 6 {
		return fmt.Sprintf("%q", lines)
	}
	return fmt.Sprintf("%q … %q", lines[:3], lines[len(lines)-3:])
}
