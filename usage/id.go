package usage

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// IDLength is the length of a record id: 32 lower-case hex digits (128 bits).
const IDLength = 32

// DeriveID returns the deterministic id of r: a hash of its tenant, project, app,
// environment, source, meter and window. Quantity, node, run and timestamps of
// arrival are not part of it, so a resend after a crash, or the same batch seen by
// two collectors, carries the same id.
//
// The encoding is part of schema version 1; changing it would double-bill every
// record resent across an upgrade.
func DeriveID(r *Record) string {
	h := sha256.New()
	var buf [20]byte
	for _, s := range []string{"paasmeter.usage.v1", r.Tenant, r.Project, r.App, string(r.Environment),
		string(r.Meter.SourceKind()), r.Source(), string(r.Meter)} {
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
