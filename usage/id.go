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
	h := sha256.New()
	var buf [20]byte
	fields := []string{"paasmeter.usage.v1", r.Tenant, r.Project, r.App, string(r.Environment)}
	if r.SchemaVersion >= 2 {
		fields = []string{"paasmeter.usage.v2", r.Tenant, r.Project, r.App, string(r.Environment), r.Node, r.RunID}
	}
	for _, s := range append(fields, string(r.Meter.SourceKind()), r.Source(), string(r.Meter)) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(strconv.AppendInt(buf[:0], r.WindowStart.UnixNano(), 10))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(buf[:0], r.WindowEnd.UnixNano(), 10))
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:IDLength/2])
}

// SetID derives and sets r.ID.
func (r *Record) SetID() { r.ID = DeriveID(r) }

// ContentHash returns a hash of everything r says except its arrival
// (received_at): two records with one id and different hashes are a conflict,
// not a resend. The stores keep it beside each record.
func ContentHash(r *Record) []byte {
	h := sha256.New()
	var buf [20]byte
	for _, s := range []string{"paasmeter.usage.content", r.ID, strconv.Itoa(r.SchemaVersion), r.Tenant, r.Project, r.App,
		string(r.Environment), r.ContainerID, r.RunID, r.Volume, r.Node, string(r.Meter)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, n := range []int64{r.Quantity, r.WindowStart.UnixNano(), r.WindowEnd.UnixNano()} {
		h.Write(strconv.AppendInt(buf[:0], n, 10))
		h.Write([]byte{0})
	}
	return h.Sum(nil)[:ContentHashLength]
}

// ContentHashLength is the length in bytes of a content hash.
const ContentHashLength = 16
