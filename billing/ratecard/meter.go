package ratecard

import "github.com/paasmeter/paasmeter/usage"

// Meter is what a rate prices: a rate-card meter is billed from one usage
// meter, or, for cpu and memory, from the used and the reserved usage meters.
type Meter string

// The rate-card meters.
const (
	CPU              Meter = "cpu"
	Memory           Meter = "memory"
	Storage          Meter = "storage_byte_seconds"
	NetTx            Meter = "net_tx_bytes"
	NetRx            Meter = "net_rx_bytes"
	ContainerSeconds Meter = "container_seconds"
)

// Meters returns every rate-card meter, in the order the canonical form lists
// rates in.
func Meters() []Meter {
	return []Meter{CPU, Memory, Storage, NetTx, NetRx, ContainerSeconds}
}

// Valid reports whether m is a rate-card meter.
func (m Meter) Valid() bool { return m.Unit() != "" }

// HasBasis reports whether rates of m choose their basis (cpu and memory);
// every other meter is billed on what was used.
func (m Meter) HasBasis() bool { return m == CPU || m == Memory }

// Unit returns the billing unit m is priced per, "" for an unknown meter.
func (m Meter) Unit() Unit {
	switch m {
	case CPU:
		return VCPUHour
	case Memory, Storage:
		return GiBHour
	case NetTx, NetRx:
		return GB
	case ContainerSeconds:
		return Hour
	}
	return ""
}

// Sources returns the usage meters m is billed from: used is the source of
// the used basis, reserved that of the reserved basis ("" for the meters that
// have no basis). The max basis takes the larger of the two per window, after
// Scale.
func (m Meter) Sources() (used, reserved usage.Meter) {
	switch m {
	case CPU:
		return usage.MeterCPU, usage.MeterCPULimit
	case Memory:
		return usage.MeterMemory, usage.MeterMemoryLimit
	case Storage:
		return usage.MeterStorageByteSeconds, ""
	case NetTx:
		return usage.MeterNetTx, ""
	case NetRx:
		return usage.MeterNetRx, ""
	case ContainerSeconds:
		return usage.MeterContainerSeconds, ""
	}
	return "", ""
}

// Scale returns the factor that brings quantities of src, one of m's
// Sources, to m's base unit, so that used and reserved compare and add up:
// a millicore·s of CPU limit is 1e6 ns of CPU time. It returns 0 when src is
// not a source of m.
func (m Meter) Scale(src usage.Meter) int64 {
	used, reserved := m.Sources()
	switch {
	case src == "":
		return 0
	case src == usage.MeterCPULimit && m == CPU:
		return 1_000_000
	case src == used || src == reserved:
		return 1
	}
	return 0
}

// Divisor returns how many of m's base units make one billing unit, 0 for
// an unknown meter. Base quantities divided by it are quantities in Unit.
func (m Meter) Divisor() int64 {
	switch m.Unit() {
	case VCPUHour:
		return 3600 * 1_000_000_000 // ns
	case GiBHour:
		return 3600 << 30 // byte·s
	case GB:
		return 1_000_000_000 // bytes
	case Hour:
		return 3600 // s
	}
	return 0
}

// MeterOf returns the rate-card meter that u is a source of, and false for a
// usage meter that no rate-card meter is billed from.
func MeterOf(u usage.Meter) (Meter, bool) {
	for _, m := range Meters() {
		if m.Scale(u) != 0 {
			return m, true
		}
	}
	return "", false
}

// Class is the environment class a rate applies to.
type Class string

// The environment classes.
const (
	Prod    Class = "prod"
	NonProd Class = "nonprod"
)

// Valid reports whether c is an environment class.
func (c Class) Valid() bool { return c == Prod || c == NonProd }

// ClassOf returns the class of an environment: prod is Prod; dev, test and
// acc are NonProd. An unknown environment has the empty class, which no rate
// prices, rather than a guess that would bill it at another class's price.
func ClassOf(e usage.Environment) Class {
	switch e {
	case usage.EnvProd:
		return Prod
	case usage.EnvDev, usage.EnvTest, usage.EnvAcc:
		return NonProd
	}
	return ""
}

// Basis is which of a meter's sources a rate bills.
type Basis string

// The bases.
const (
	// Used bills what the containers used.
	Used Basis = "used"
	// Reserved bills the limits the containers reserved.
	Reserved Basis = "reserved"
	// Max bills the larger of used and reserved, per window.
	Max Basis = "max"
)

// Valid reports whether b is a basis.
func (b Basis) Valid() bool { return b == Used || b == Reserved || b == Max }

// Unit is a billing unit: prices are per one of it.
type Unit string

// The billing units; Meter.Unit says which meter is priced in which.
const (
	VCPUHour Unit = "vCPU-hour"
	GiBHour  Unit = "GiB-hour"
	GB       Unit = "GB"
	Hour     Unit = "hour"
)
