// Package eventstest builds valid events for tests.
package eventstest

import (
	"time"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/usage"
)

// Event returns a valid event of a container of tenant on node "node-1",
// project "claims", app "pricing", environment prod, with its id set. A died
// event gets exit code 0, a probe event a successful HTTP probe and a
// health_status event "healthy". Tests that change a field the id depends on call SetID again.
func Event(tenant, container string, typ events.Type, at time.Time) events.Event {
	e := events.Event{
		SchemaVersion: events.SchemaVersion, Tenant: tenant, Project: "claims", App: "pricing",
		Environment: usage.EnvProd, Node: "node-1", ContainerID: container, RunID: container + "-run1",
		Type: typ, Time: at.UTC(),
	}
	switch typ {
	case events.Died:
		code := 0
		e.ExitCode = &code
	case events.Probe:
		e.Probe = &events.ProbeResult{OK: true, Kind: "http", LatencyNs: 1_500_000}
	case events.Health:
		e.Health = "healthy"
	}
	e.SetID()
	return e
}
