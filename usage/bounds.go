package usage

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/paasmeter/paasmeter/batch"
)

// Bounds are the most any node, link or volume can physically use: a record
// whose quantity no machine could have measured is refused rather than
// billed. The defaults are far beyond today's largest machines, so they
// never refuse real usage; a node that reports its capacity (NodeCapacity)
// is held to that instead when it is smaller.
type Bounds struct {
	// MaxNodeCPUs bounds cpu_ns (window × CPUs) and cpu_limit_millicore_seconds.
	MaxNodeCPUs int64 `yaml:"max_node_cpus"`
	// MaxNodeMemoryBytes bounds memory_byte_seconds and memory_limit_byte_seconds (memory × window).
	MaxNodeMemoryBytes int64 `yaml:"max_node_memory_bytes"`
	// MaxLinkBytesPerSecond bounds net_rx_bytes and net_tx_bytes (rate × window).
	MaxLinkBytesPerSecond int64 `yaml:"max_link_bytes_per_second"`
	// MaxVolumeBytes bounds storage_byte_seconds (size × window).
	MaxVolumeBytes int64 `yaml:"max_volume_bytes"`
}

// DefaultBounds are 512 CPUs, 4 TiB of memory, a 100 Gbit/s link and 64 TiB volumes.
func DefaultBounds() Bounds {
	return Bounds{MaxNodeCPUs: 512, MaxNodeMemoryBytes: 4 << 40, MaxLinkBytesPerSecond: 100e9 / 8, MaxVolumeBytes: 64 << 40}
}

// Validate names each bound that is not positive, under prefix (the
// configuration section, such as "limits.").
func (b Bounds) Validate(prefix string) error {
	var errs []error
	for _, f := range []struct {
		key string
		v   int64
	}{{"max_node_cpus", b.MaxNodeCPUs}, {"max_node_memory_bytes", b.MaxNodeMemoryBytes},
		{"max_link_bytes_per_second", b.MaxLinkBytesPerSecond}, {"max_volume_bytes", b.MaxVolumeBytes}} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("%s%s: %d must be positive", prefix, f.key, f.v))
		}
	}
	return errors.Join(errs...)
}

// The request headers in which an agent reports its node's capacity
// (NodeCapacity) with each batch of usage records. A header left out leaves
// the configured bound in force. Headers rather than record fields or the
// batch envelope: the capacity is the sender's, at sending time, and the
// record and envelope formats (and every decoder of them) stay as they are.
const (
	HeaderNodeCPUs        = "Paasmeter-Node-Cpus"
	HeaderNodeMemoryBytes = "Paasmeter-Node-Memory-Bytes"
)

// minBoundSpan is the shortest span a window's bound is computed over: the
// agent's default window, longer than any sample interval it accepts.
const minBoundSpan = time.Minute

// NodeCapacity is what an agent reports of its node; zero fields are not reported.
type NodeCapacity struct {
	CPUs        int64
	MemoryBytes int64
}

// CheckBounds returns a problem, tagged with index, when r's quantity is more
// than its window could hold on the node (reported capacity, at most b) or
// under b. r must be valid (Validate).
func CheckBounds(r *Record, index int, b Bounds, node NodeCapacity) []batch.Problem {
	// A window is bounded as if it lasted at least minBoundSpan: a run's
	// counters are not read exactly at its edges (the engine records a start
	// after the process started; the cgroup parent, read after the exit, holds
	// the runtime's work around it), so a run's short first or last window (6
	// ms in a chaos run) can carry more than its own length of CPU. Refusing
	// it would dead-letter real usage. A longer window (an agent's may be an
	// hour) is bounded by its whole length.
	d := max(r.WindowEnd.Sub(r.WindowStart), minBoundSpan)
	var bound int64
	// why is only spelled out for a record over its bound: a Sprintf for
	// every record was two thirds of the check's cost to a collector.
	var why func() string
	switch r.Meter {
	case MeterCPU:
		cpus, src := capped(node.CPUs, b.MaxNodeCPUs, "node CPUs reported", "limits.max_node_cpus")
		bound, why = mulDiv(cpus, int64(d), 1), func() string { return fmt.Sprintf("window × %d CPUs (%s)", cpus, src) }
	case MeterCPULimit:
		// millicore-seconds: CPUs × 1000 × ns / 1e9
		bound, why = mulDiv(b.MaxNodeCPUs, int64(d), int64(time.Millisecond)), func() string { return fmt.Sprintf("window × %d CPUs × 1000 (limits.max_node_cpus)", b.MaxNodeCPUs) }
	case MeterMemory:
		mem, src := capped(node.MemoryBytes, b.MaxNodeMemoryBytes, "node memory reported", "limits.max_node_memory_bytes")
		bound, why = mulDiv(mem, int64(d), int64(time.Second)), func() string { return fmt.Sprintf("window × %d bytes (%s)", mem, src) }
	case MeterMemoryLimit:
		// A limit may exceed the node's memory: only the configured bound applies.
		bound, why = mulDiv(b.MaxNodeMemoryBytes, int64(d), int64(time.Second)), func() string {
			return fmt.Sprintf("window × %d bytes (limits.max_node_memory_bytes)", b.MaxNodeMemoryBytes)
		}
	case MeterNetRx, MeterNetTx:
		bound, why = mulDiv(b.MaxLinkBytesPerSecond, int64(d), int64(time.Second)), func() string {
			return fmt.Sprintf("window × %d bytes/s (limits.max_link_bytes_per_second)", b.MaxLinkBytesPerSecond)
		}
	case MeterStorageByteSeconds:
		bound, why = mulDiv(b.MaxVolumeBytes, int64(d), int64(time.Second)), func() string { return fmt.Sprintf("window × %d bytes (limits.max_volume_bytes)", b.MaxVolumeBytes) }
	default:
		return nil // container_seconds: Validate bounds it by the window
	}
	if r.Quantity <= bound {
		return nil
	}
	return []batch.Problem{{Index: index, Field: "quantity", Reason: fmt.Sprintf("%d %s is more than the bound of %d for a window of %s (at least 1m counts): %s",
		r.Quantity, r.Meter, bound, d, why())}}
}

// capped returns the reported value when it is set and below the configured
// one, else the configured one, and which of the two it is.
func capped(reported, configured int64, reportedName, configuredKey string) (int64, string) {
	if reported > 0 && reported < configured {
		return reported, reportedName
	}
	return configured, configuredKey
}

// mulDiv returns ⌈a × b / c⌉ for non-negative a, b and positive c, or
// math.MaxInt64 when that does not fit: a bound past int64 bounds nothing.
func mulDiv(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, uint64(c))
	if rem > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
