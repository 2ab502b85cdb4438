// Package usage is the usage-record contract: the unit of billing shared by the
// agent that samples it, the collector that dedupes and stores it, and the billing
// engine that prices it (DESIGN.md §3).
//
// A record says how much of one meter one source (a container run or a persistent
// volume) used during one window. Its id is derived from the node, run, source, meter and
// window, so every copy of the same measurement carries the same id and the store
// keeps the first arrival only.
package usage

import "time"

// SchemaVersion is the version of the record encoding this build writes.
// The collector accepts MinSchemaVersion..SchemaVersion, so collectors can be
// upgraded before agents. Version 2 derives ids with the node and the run
// (DeriveID); the fields are those of version 1.
const (
	SchemaVersion    = 2
	MinSchemaVersion = 1
)

// Record is one measurement of one meter for one source and window.
//
// Quantities are integers in the meter's base unit (see Meters); windows are
// half-open intervals [WindowStart, WindowEnd) in UTC.
type Record struct {
	ID            string      `json:"id"`
	SchemaVersion int         `json:"schema_version"`
	Tenant        string      `json:"tenant"`
	Project       string      `json:"project"`
	App           string      `json:"app"`
	Environment   Environment `json:"environment"`
	// ContainerID and RunID identify the source of container meters; Volume the
	// source of storage_byte_seconds. Exactly one kind of source is set.
	ContainerID string    `json:"container_id,omitempty"`
	RunID       string    `json:"run_id,omitempty"`
	Volume      string    `json:"volume,omitempty"`
	Node        string    `json:"node"`
	Meter       Meter     `json:"meter"`
	Quantity    int64     `json:"quantity"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// ReceivedAt is stamped by the collector on first arrival; agents leave it zero.
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// Source returns the identifier of what was measured: the container id for
// container meters, the volume for storage_byte_seconds.
func (r *Record) Source() string {
	if r.Meter.SourceKind() == SourceVolume {
		return r.Volume
	}
	return r.ContainerID
}

// Environment is the deployment stage of an app.
type Environment string

// The environments of DESIGN.md §3.
const (
	EnvDev  Environment = "dev"
	EnvTest Environment = "test"
	EnvAcc  Environment = "acc"
	EnvProd Environment = "prod"
)

// Valid reports whether e is one of the environments above.
func (e Environment) Valid() bool {
	switch e {
	case EnvDev, EnvTest, EnvAcc, EnvProd:
		return true
	}
	return false
}

// Meter names what a record measures.
type Meter string

// The meters of DESIGN.md §3.
const (
	MeterCPU                Meter = "cpu_ns"
	MeterMemory             Meter = "memory_byte_seconds"
	MeterMemoryLimit        Meter = "memory_limit_byte_seconds"
	MeterCPULimit           Meter = "cpu_limit_millicore_seconds"
	MeterNetRx              Meter = "net_rx_bytes"
	MeterNetTx              Meter = "net_tx_bytes"
	MeterContainerSeconds   Meter = "container_seconds"
	MeterStorageByteSeconds Meter = "storage_byte_seconds"
)

// SourceKind is what a meter is measured on.
type SourceKind string

// Source kinds.
const (
	SourceContainer SourceKind = "container"
	SourceVolume    SourceKind = "volume"
)

// MeterInfo describes a meter.
type MeterInfo struct {
	Meter      Meter
	BaseUnit   string
	SourceKind SourceKind
	Help       string
}

// Meters lists every meter with its base unit, in a stable order.
var Meters = []MeterInfo{
	{MeterCPU, "ns", SourceContainer, "CPU time used"},
	{MeterMemory, "byte·s", SourceContainer, "memory working set integrated over time"},
	{MeterMemoryLimit, "byte·s", SourceContainer, "memory limit (reserved) integrated over time"},
	{MeterCPULimit, "millicore·s", SourceContainer, "CPU limit (reserved) integrated over time"},
	{MeterNetRx, "byte", SourceContainer, "bytes received"},
	{MeterNetTx, "byte", SourceContainer, "bytes sent"},
	{MeterContainerSeconds, "s", SourceContainer, "seconds the container ran"},
	{MeterStorageByteSeconds, "byte·s", SourceVolume, "provisioned volume size integrated over the time it exists"},
}

// Info returns the description of m and whether m is known.
func (m Meter) Info() (MeterInfo, bool) {
	for _, mi := range Meters {
		if mi.Meter == m {
			return mi, true
		}
	}
	return MeterInfo{}, false
}

// Valid reports whether m is a known meter.
func (m Meter) Valid() bool {
	_, ok := m.Info()
	return ok
}

// SourceKind returns what m is measured on; unknown meters count as container meters.
func (m Meter) SourceKind() SourceKind {
	if m == MeterStorageByteSeconds {
		return SourceVolume
	}
	return SourceContainer
}
