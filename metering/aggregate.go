package metering

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/paasmeter/paasmeter/usage"
)

// UsageAggregator is an optional port of a metering store: one that can sum a
// tenant's month in the server returns the sums a rating engine needs instead
// of every record (billing's invoice run uses it when the store has it, and
// scans the records otherwise). The sums are exact and the groups fixed by
// the query, so any two stores holding the same records answer the same.
type UsageAggregator interface {
	// AggregateUsage sums the stored records of q.Tenant whose window starts
	// in [q.From, q.To) and that were received in (q.ReceivedAfter,
	// q.ReceivedUpTo]. Rows come in no particular order.
	AggregateUsage(ctx context.Context, q AggregateQuery) (*Aggregate, error)
}

// AggregateQuery says which records to sum, and how to group them.
type AggregateQuery struct {
	Tenant string
	// From and To bound the window start: From ≤ window_start < To.
	From, To time.Time
	// ReceivedAfter (zero: no lower bound) and ReceivedUpTo bound received_at:
	// ReceivedAfter < received_at ≤ ReceivedUpTo.
	ReceivedAfter, ReceivedUpTo time.Time
	// Versions are the instants at which successive rate-card versions take
	// effect, ascending: a record's version is the index of the last one at
	// or before its window start (−1 before the first).
	Versions []time.Time
	// RunMeters are the meters whose record groups are kept apart per
	// container and run (those a minimum run duration may apply to).
	RunMeters []usage.Meter
	// Pairs are the meters whose records are also paired per window, used
	// against reserved (the max basis).
	Pairs []MeterPair
	// CountOnly asks for the Buckets alone.
	CountOnly bool
}

// MeterPair is a used meter and its reserved one, paired per window: the
// window of a container's run from start to end, of one project and
// environment.
type MeterPair struct {
	Used, Reserved usage.Meter
	// ReservedScale brings a reserved quantity to the used meter's unit
	// (positive): the reserved record wins a window when quantity ×
	// ReservedScale exceeds the used one.
	ReservedScale int64
	// Run keeps the pairs' groups apart per container and run.
	Run bool
}

// DigestBucket is the width of the time buckets an aggregate counts and
// digests records in: every time zone's offset, and so every calendar day's
// start, is a whole number of them from the Unix epoch.
const DigestBucket = 15 * time.Minute

// Aggregate is what AggregateUsage returns.
type Aggregate struct {
	Groups  []RecordGroup
	Windows []WindowGroup
	Buckets []Bucket
}

// RecordGroup sums the records of one project, environment, meter and
// rate-card version (and container and run, for the query's RunMeters).
type RecordGroup struct {
	Project     string
	Environment usage.Environment
	Meter       usage.Meter
	// ContainerID and RunID are empty unless Meter is one of RunMeters.
	ContainerID, RunID string
	Version            int
	Records            int64
	Quantity           usage.Total
	// Duration is the sum of the records' window lengths, for RunMeters only.
	Duration time.Duration
	// First is the earliest window start of the group.
	First time.Time
}

// WindowGroup sums the windows of one pair of meters, project, environment
// and version (and container and run, for a pair with Run). A window is the
// records of the pair's meters that share container, run, window start and
// end, project and environment; of several records of one meter in a window
// the one with the greatest id counts.
type WindowGroup struct {
	Project     string
	Environment usage.Environment
	// Used names the pair.
	Used               usage.Meter
	ContainerID, RunID string
	Version            int
	Windows            int64
	// UsedWon sums the used quantity of the windows where it is at least the
	// scaled reserved one (or there is no reserved record); ReservedWon the
	// reserved quantity (unscaled) of the others, and UsedLost their used one.
	UsedWon, ReservedWon, UsedLost usage.Total
	// Duration is the sum of the windows' lengths, for a pair with Run only.
	Duration time.Duration
	First    time.Time
}

// Bucket counts and digests the records of one DigestBucket of window start.
type Bucket struct {
	Start   time.Time
	Records int64
	// Digest is the sum of the records' RecordDigest, lane by lane, modulo 2^64.
	Digest Digest
}

// Digest is an order-independent digest of a set of records: the lane-wise
// sum, modulo 2^64, of their RecordDigest.
type Digest [4]uint64

// Add adds o to d.
func (d *Digest) Add(o Digest) {
	for i := range d {
		d[i] += o[i]
	}
}

// Bytes returns d as 32 bytes, each lane little-endian.
func (d Digest) Bytes() []byte {
	b := make([]byte, 0, 32)
	for _, l := range d {
		b = binary.LittleEndian.AppendUint64(b, l)
	}
	return b
}

// RecordDigest is one record's share of a Digest: the sha-256 of its id's 16
// bytes, its quantity and its received_at (Unix ns), each as 8 little-endian
// bytes, read as four little-endian 64-bit lanes. A store computes the same
// in SQL (see metering/clickhouse's aggregate.go). id is the record's 32 hex
// digits; one that is not is hashed as its text.
func RecordDigest(id string, quantity int64, receivedAt time.Time) Digest {
	var msg [32]byte
	if len(id) != 2*16 {
		return recordDigest(append([]byte(id), msg[16:]...), quantity, receivedAt)
	}
	if _, err := hex.Decode(msg[:16], []byte(id)); err != nil {
		return recordDigest(append([]byte(id), msg[16:]...), quantity, receivedAt)
	}
	return recordDigest(msg[:], quantity, receivedAt)
}

func recordDigest(msg []byte, quantity int64, receivedAt time.Time) Digest {
	n := len(msg) - 16
	binary.LittleEndian.PutUint64(msg[n:], uint64(quantity))
	binary.LittleEndian.PutUint64(msg[n+8:], uint64(receivedAt.UnixNano()))
	h := sha256.Sum256(msg)
	var d Digest
	for i := range d {
		d[i] = binary.LittleEndian.Uint64(h[8*i:])
	}
	return d
}
