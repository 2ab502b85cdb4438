package supervise

import (
	"context"
	"time"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/probe"
	"github.com/paasmeter/paasmeter/runtime/spec"
)

// probeTarget is a running replica with the health check its app declares.
type probeTarget struct {
	c      observed
	health spec.Health
}

// syncProbes runs one probe loop per replica in want and ends the others.
func (r *Supervisor) syncProbes(ctx context.Context, want map[string]probeTarget) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, cancel := range r.probers {
		if _, ok := want[id]; !ok {
			cancel()
			delete(r.probers, id)
			delete(r.health, id)
		}
	}
	for id, t := range want {
		if _, ok := r.probers[id]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		r.probers[id] = cancel
		r.health[id] = &health{}
		r.probeWG.Add(1)
		go func() {
			defer r.probeWG.Done()
			r.probeLoop(pctx, t)
		}()
	}
}

func (r *Supervisor) stopProbes() {
	r.mu.Lock()
	for id, cancel := range r.probers {
		cancel()
		delete(r.probers, id)
	}
	r.mu.Unlock()
	r.probeWG.Wait()
}

// probeLoop probes one replica every interval, from the first interval after
// it was seen running, and emits each result as a probe event.
func (r *Supervisor) probeLoop(ctx context.Context, t probeTarget) {
	tick := time.NewTicker(t.health.Interval)
	defer tick.Stop()
	ip := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ip == "" && (t.health.HTTP != nil || t.health.TCP != nil) {
			in, err := r.o.Docker.ContainerInspect(ctx, t.c.id)
			if err == nil && in.NetworkSettings != nil {
				if n := in.NetworkSettings.Networks[Network(t.c.key.tenant)]; n != nil {
					ip = n.IPAddress
				}
			}
		}
		res := r.prober.Check(ctx, probe.Target{ContainerID: t.c.id, IP: ip, Health: t.health})
		if ctx.Err() != nil {
			return // stopped on purpose: the result says nothing of the replica
		}
		r.record(t.c, res)
	}
}

// record keeps the replica's health and emits the probe event.
func (r *Supervisor) record(c observed, res events.ProbeResult) {
	r.mu.Lock()
	if h := r.health[c.id]; h != nil {
		if res.OK {
			h.fails, h.everOK = 0, true
		} else {
			h.fails++
		}
	}
	r.mu.Unlock()
	k := c.key
	// Both results exist from the first probe on: rate() over a counter that
	// appears at its first failure would never see that failure.
	ok := r.metrics.probes.WithLabelValues(k.tenant, k.project, k.app, string(k.env), "ok")
	failed := r.metrics.probes.WithLabelValues(k.tenant, k.project, k.app, string(k.env), "failed")
	if res.OK {
		ok.Inc()
	} else {
		failed.Inc()
	}
	if r.o.Emit == nil {
		return
	}
	e := events.Event{SchemaVersion: events.SchemaVersion, Tenant: k.tenant, Project: k.project, App: k.app, Environment: k.env,
		Node: r.o.Node, ContainerID: c.id, RunID: c.run, Replica: c.labels[engine.LabelReplica], Type: events.Probe,
		Time: r.o.Clock.Now().UTC(), Probe: &res}
	e.SetID()
	r.o.Emit([]events.Event{e})
}

// passed reports whether the container has passed a probe.
func (r *Supervisor) passed(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.health[id]
	return h != nil && h.everOK
}

// unhealthy reports whether the container failed its last Retries probes in a row.
func (r *Supervisor) unhealthy(id string, hc *spec.Health) bool {
	if hc == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.health[id]
	return h != nil && h.fails >= hc.Retries
}
