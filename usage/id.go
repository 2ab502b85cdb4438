package usage

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// IDLength is the length of a record id: 32 lower-case hex digits (128 bits).
const IDLength = 32

// DeriveID returns the deterministic id of r, by r's schema version.
//
// Version 2 hashes its tenant, project, app, environment, node, run, source,
// meter and window: the node and the run are in it so that no node can send a
// record that takes the id of another node's (or another run's) measurement,
// which the store's first-arrival rule would then keep in its place.
// Version 1 left the node and the run out. Quantity and timestamps of arrival
// are never part of it, so a resend after a crash, or the same batch seen by
// two collectors, carries the same id.
//
// Each version's encoding is fixed for good: a record keeps the id it was
// sampled with (a spool replayed across an upgrade still holds version 1
// records), and changing an encoding would double-bill every record resent
// across the upgrade.
func DeriveID(r *Record) string {
	id := deriveID(r)
	return string(id[:])
}

// deriveID is DeriveID's hex digits, on the stack: Validate compares them
// with a record's id without allocating a string for each record.
func deriveID(r *Record) [IDLength]byte {
	var buf [hashedBytes]byte
	var b []byte
	if r.SchemaVersion >= 2 {
		b = appendFields(buf[:0], "paasmeter.usage.v2", r.Tenant, r.Project, r.App, string(r.Environment), r.Node, r.RunID)
	} else {
		b = appendFields(buf[:0], "paasmeter.usage.v1", r.Tenant, r.Project, r.App, string(r.Environment))
	}
	b = appendFields(b, string(r.Meter.SourceKind()), r.Source(), string(r.Meter))
	b = append(strconv.AppendInt(b, r.WindowStart.UnixNano(), 10), 0)
	b = strconv.AppendInt(b, r.WindowEnd.UnixNano(), 10)
	sum := sha256.Sum256(b)
	var id [IDLength]byte
	hex.Encode(id[:], sum[:IDLength/2])
	return id
}

// hashedBytes is room on the stack for what DeriveID and ContentHash hash of
// a record with labels of ordinary length (longer ones take the heap). They
// hash it in one call: a hash.Hash Write for each field, each field copied
// to the heap on its way, cost collectors more than SHA-256 itself did.
const hashedBytes = 320

// appendFields appends each of fields to b, each followed by a zero byte.
func appendFields(b []byte, fields ...string) []byte {
	for _, f := range fields {
		b = append(append(b, f...), 0)
	}
	return b
}

// SetID derives and sets r.ID.
func (r *Record) SetID() { r.ID = DeriveID(r) }

// ContentHash returns a hash of everything r says except its arrival
// (received_at): two records with one id and different hashes are a conflict,
// not a resend. The stores keep it beside each record.
func ContentHash(r *Record) []byte {
	var buf [hashedBytes]byte
	b := appendFields(buf[:0], "paasmeter.usage.content", r.ID)
	b = append(strconv.AppendInt(b, int64(r.SchemaVersion), 10), 0)
	b = appendFields(b, r.Tenant, r.Project, r.App, string(r.Environment), r.ContainerID, r.RunID, r.Volume, r.Node, string(r.Meter))
	for _, n := range []int64{r.Quantity, r.WindowStart.UnixNano(), r.WindowEnd.UnixNano()} {
		b = append(strconv.AppendInt(b, n, 10), 0)
	}
	sum := sha256.Sum256(b)
	return sum[:ContentHashLength]
}

// ContentHashLength is the length in bytes of a content hash.
const ContentHashLength = 16
