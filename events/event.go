// Package events is the event contract: what happened to a container run
// (lifecycle) and how the platform's probes found each replica. The SLA is
// computed from events (DESIGN.md §3, §6), so they are deduplicated like usage:
// deterministic ids, first arrival kept.
package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/usage"
)

// SchemaVersion is the version of the event encoding this build writes; the
// collector accepts MinSchemaVersion..SchemaVersion. Version 2 derives ids
// with the node (DeriveID); the fields are those of version 1.
const (
	SchemaVersion    = 2
	MinSchemaVersion = 1
)

// Type is what happened.
type Type string

// The event types.
const (
	Created   Type = "created"
	Started   Type = "started"
	Died      Type = "died" // the run ended: exit code, OOM flag
	Stopped   Type = "stopped"
	Removed   Type = "removed"
	Restarted Type = "restarted"
	OOM       Type = "oom" // the kernel's OOM killer hit the container
	Health    Type = "health_status"
	Probe     Type = "probe" // a platform probe of one replica
)

// Types lists every event type.
var Types = []Type{Created, Started, Died, Stopped, Removed, Restarted, OOM, Health, Probe}

// Initiator says who caused a stop or kill; the SLA attributes down minutes by it.
type Initiator string

// The initiators. Empty means unknown (the container ended on its own, as far
// as the agent can tell).
const (
	ByOwner    Initiator = "owner"    // the institution stopped it on purpose
	ByPlatform Initiator = "platform" // the platform killed or stopped it
)

// Event is one thing that happened to one container run.
type Event struct {
	ID            string            `json:"id"`
	SchemaVersion int               `json:"schema_version"`
	Tenant        string            `json:"tenant"`
	Project       string            `json:"project"`
	App           string            `json:"app"`
	Environment   usage.Environment `json:"environment"`
	Node          string            `json:"node"`
	ContainerID   string            `json:"container_id"`
	RunID         string            `json:"run_id"`
	// Replica is the replica name of the app, when the runtime knows it.
	Replica string    `json:"replica,omitempty"`
	Type    Type      `json:"type"`
	Time    time.Time `json:"time"`
	// ExitCode and OOMKilled describe a died event.
	ExitCode  *int      `json:"exit_code,omitempty"`
	OOMKilled bool      `json:"oom_killed,omitempty"`
	Initiator Initiator `json:"initiator,omitempty"`
	// Health is the Docker health status of a health_status event.
	Health string `json:"health,omitempty"`
	// Probe is the result of a probe event.
	Probe *ProbeResult `json:"probe,omitempty"`
	// ReceivedAt is stamped by the collector on first arrival.
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// ProbeResult is how one probe of one replica went.
type ProbeResult struct {
	OK bool `json:"ok"`
	// Kind is http, tcp or exec.
	Kind      string `json:"kind"`
	LatencyNs int64  `json:"latency_ns"`
	// Detail says why a failed probe failed.
	Detail string `json:"detail,omitempty"`
}

// DeriveID returns the deterministic id of e, by e's schema version: a hash
// of its source run, type and time, so the same event reported twice (agent
// resend, resync after the event stream broke) has one id. Version 2 also
// hashes the node, so that no node can take the id of an event another node
// reports; version 1 (still accepted, its ids never change) did not.
func DeriveID(e *Event) string {
	h := sha256.New()
	fields := []string{"paasmeter.event.v1", e.Tenant, e.Project, e.App, string(e.Environment)}
	if e.SchemaVersion >= 2 {
		fields = []string{"paasmeter.event.v2", e.Tenant, e.Project, e.App, string(e.Environment), e.Node}
	}
	for _, s := range append(fields, e.ContainerID, e.RunID, e.Replica, string(e.Type), strconv.FormatInt(e.Time.UnixNano(), 10)) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:usage.IDLength/2])
}

// ContentHash returns a hash of everything e says except its arrival
// (received_at): two events with one id and different hashes are a conflict,
// not a resend. The stores keep it beside each event.
func ContentHash(e *Event) []byte {
	h := sha256.New()
	exit, probe := "", ""
	if e.ExitCode != nil {
		exit = strconv.Itoa(*e.ExitCode)
	}
	if p := e.Probe; p != nil {
		probe = fmt.Sprintf("%t\x00%s\x00%d\x00%s", p.OK, p.Kind, p.LatencyNs, p.Detail)
	}
	for _, s := range []string{"paasmeter.event.content", e.ID, strconv.Itoa(e.SchemaVersion), e.Tenant, e.Project, e.App,
		string(e.Environment), e.Node, e.ContainerID, e.RunID, e.Replica, string(e.Type), strconv.FormatInt(e.Time.UnixNano(), 10),
		exit, strconv.FormatBool(e.OOMKilled), string(e.Initiator), e.Health, probe} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum(nil)[:usage.ContentHashLength]
}

// SetID derives and sets e.ID.
func (e *Event) SetID() { e.ID = DeriveID(e) }

// DecodeBatch reads one batch of events (package batch) and validates each as
// received at now, exactly as usage.DecodeBatch does for records.
func DecodeBatch(r io.Reader, now time.Time, lim usage.Limits) ([]Event, error) {
	return batch.DecodeStamped[Event, wireEvent](r, lim.MaxRecords, func(e *Event, i int) []batch.Problem {
		return Validate(e, i, now, lim)
	})
}

// wireEvent is Event as decoded from outside input, with string times (see batch.ParseTime).
type wireEvent struct {
	Event
	Time       string `json:"time"`
	ReceivedAt string `json:"received_at"`
}

// Times implements batch.Stamped.
func (w *wireEvent) Times() (string, string) { return w.Time, w.ReceivedAt }

// Stamp implements batch.Stamped.
func (w *wireEvent) Stamp(t, receivedAt time.Time) Event {
	e := w.Event
	e.Time, e.ReceivedAt = t, receivedAt
	return e
}

// EncodeBatch writes evs as a batch.
func EncodeBatch(w io.Writer, evs []Event) error { return batch.Encode(w, evs) }

// Validate checks e as received at now and returns every problem, tagged with index.
func Validate(e *Event, index int, now time.Time, lim usage.Limits) []batch.Problem {
	var ps []batch.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, batch.Problem{Index: index, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if e.SchemaVersion < MinSchemaVersion || e.SchemaVersion > SchemaVersion {
		add("schema_version", "%d is not supported (this collector accepts %d to %d)", e.SchemaVersion, MinSchemaVersion, SchemaVersion)
	}
	ps = append(ps, usage.ValidateLabels(index, e.Tenant, e.Project, e.App, e.Environment, e.Node)...)
	ps = append(ps, usage.ValidateIdent(index, "container_id", e.ContainerID)...)
	ps = append(ps, usage.ValidateIdent(index, "run_id", e.RunID)...)
	if e.Replica != "" {
		ps = append(ps, usage.ValidateIdent(index, "replica", e.Replica)...)
	}
	switch {
	case e.Time.IsZero():
		add("time", "is required")
	case e.Time.After(now.Add(lim.FutureSkew)):
		add("time", "%s is more than %s in the future", e.Time.Format(time.RFC3339), lim.FutureSkew)
	case e.Time.Before(now.Add(-lim.Horizon)):
		add("time", "%s is older than the horizon of %s", e.Time.Format(time.RFC3339), lim.Horizon)
	}
	known := false
	for _, t := range Types {
		known = known || e.Type == t
	}
	if !known {
		add("type", "%q is not an event type", batch.Truncate(string(e.Type)))
	}
	if (e.Type == Died) != (e.ExitCode != nil) {
		add("exit_code", "is required for died events and only for them")
	}
	if e.OOMKilled && e.Type != Died {
		add("oom_killed", "is only for died events")
	}
	if (e.Type == Probe) != (e.Probe != nil) {
		add("probe", "is required for probe events and only for them")
	} else if p := e.Probe; p != nil {
		if p.Kind != "http" && p.Kind != "tcp" && p.Kind != "exec" {
			add("probe", "kind %q must be http, tcp or exec", batch.Truncate(p.Kind))
		}
		if p.LatencyNs < 0 {
			add("probe", "latency_ns %d is negative", p.LatencyNs)
		}
		if len(p.Detail) > 1024 {
			add("probe", "detail is longer than 1024 bytes")
		}
	}
	if (e.Type == Health) != (e.Health != "") {
		add("health", "is required for health_status events and only for them")
	} else if e.Health != "" && e.Health != "healthy" && e.Health != "unhealthy" && e.Health != "starting" {
		add("health", "%q must be healthy, unhealthy or starting", batch.Truncate(e.Health))
	}
	switch e.Initiator {
	case "", ByOwner, ByPlatform:
	default:
		add("initiator", "%q must be owner, platform or empty", batch.Truncate(string(e.Initiator)))
	}
	if !e.ReceivedAt.IsZero() {
		add("received_at", "is set by the collector and must be empty")
	}
	switch {
	case e.ID == "":
		add("id", "is required")
	case len(ps) == 0:
		if want := DeriveID(e); e.ID != want {
			add("id", "does not match the event's node, run, type and time under schema_version %d (expected %s)", e.SchemaVersion, want)
		}
	}
	return ps
}
