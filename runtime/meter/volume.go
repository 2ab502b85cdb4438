package meter

import (
	"math/big"
	"time"

	"github.com/paasmeter/paasmeter/usage"
)

// Volume is a persistent volume billed by its provisioned size for as long as
// it exists, whether or not a container uses it.
type Volume struct {
	Tenant, Project, App string
	Environment          usage.Environment
	Node                 string
	// Name identifies the volume within its tenant.
	Name      string
	SizeBytes uint64
}

// VolumeState is what RestoreVolume needs after an agent restart.
type VolumeState struct {
	Volume Volume        `json:"volume"`
	Window time.Duration `json:"window"`
	// From starts the open window.
	From time.Time `json:"from"`
}

// VolumeAccumulator turns a volume's existence into storage_byte_seconds
// records per clock-aligned window.
type VolumeAccumulator struct{ st VolumeState }

// NewVolume starts metering v from from (its creation, or when the agent first
// saw it).
func NewVolume(v Volume, window time.Duration, from time.Time) *VolumeAccumulator {
	return &VolumeAccumulator{VolumeState{Volume: v, Window: window, From: from}}
}

// RestoreVolume resumes from a saved state.
func RestoreVolume(st VolumeState) *VolumeAccumulator { return &VolumeAccumulator{st} }

// State returns what RestoreVolume needs.
func (a *VolumeAccumulator) State() VolumeState { return a.st }

// Advance returns the records of the windows that closed up to now.
func (a *VolumeAccumulator) Advance(now time.Time) []usage.Record {
	var out []usage.Record
	for {
		end := a.st.From.Truncate(a.st.Window).Add(a.st.Window)
		if end.After(now) {
			return out
		}
		out = append(out, a.emit(end))
	}
}

// Close ends the volume's existence at end and returns the remaining records.
func (a *VolumeAccumulator) Close(end time.Time) []usage.Record {
	out := a.Advance(end)
	if end.After(a.st.From) {
		out = append(out, a.emit(end))
	}
	return out
}

func (a *VolumeAccumulator) emit(end time.Time) usage.Record {
	v := a.st.Volume
	// size × ns / 1e9, rounded half up; exact beyond 64 bits.
	q := new(big.Int).Mul(new(big.Int).SetUint64(v.SizeBytes), big.NewInt(int64(end.Sub(a.st.From))))
	q.Add(q, halfSecond).Quo(q, nsPerSecond)
	qty := int64(maxInt64)
	if q.IsInt64() {
		qty = q.Int64()
	}
	r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: v.Tenant, Project: v.Project, App: v.App, Environment: v.Environment,
		Volume: v.Name, Node: v.Node, Meter: usage.MeterStorageByteSeconds, Quantity: qty, WindowStart: a.st.From.UTC(), WindowEnd: end.UTC()}
	r.SetID()
	a.st.From = end
	return r
}
