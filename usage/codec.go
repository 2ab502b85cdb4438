package usage

import (
	"fmt"
	"io"
	"time"

	"github.com/paasmeter/paasmeter/batch"
)

// The wire form of POST /api/v1/usage is a batch (package batch):
//
//	{"records": [ {record}, … ]}
//
// Records use the JSON field names of Record; times are RFC 3339 with optional
// fractional seconds; quantity is a JSON integer.

// DecodeBatch reads one batch from r and validates every record as received at
// now. It fails as a whole: either every record is valid and all are returned, or
// the error is a *batch.InvalidError naming each bad record's index, field and
// reason, a *batch.TooManyError, or wraps batch.ErrMalformed.
//
// With a *batch.InvalidError, the records that could be decoded are returned
// too, for accounting (which tenants sent bad data); they must not be stored.
//
// The caller bounds the size of r.
func DecodeBatch(r io.Reader, now time.Time, lim Limits) ([]Record, error) {
	var recs []Record
	err := batch.Decode(r, lim.MaxRecords, func(i int, w *wireRecord) []batch.Problem {
		rec, ps := w.record(i)
		if len(ps) == 0 {
			ps = Validate(&rec, i, now, lim)
		}
		recs = append(recs, rec)
		return ps
	})
	return recs, err
}

// EncodeBatch writes recs as a batch.
func EncodeBatch(w io.Writer, recs []Record) error { return batch.Encode(w, recs) }

// wireRecord is Record as decoded from outside input. Times are strings so that a
// malformed time is reported with its field name (encoding/json does not name the
// field when time.Time's own decoder fails).
type wireRecord struct {
	ID            string      `json:"id"`
	SchemaVersion int         `json:"schema_version"`
	Tenant        string      `json:"tenant"`
	Project       string      `json:"project"`
	App           string      `json:"app"`
	Environment   Environment `json:"environment"`
	ContainerID   string      `json:"container_id"`
	RunID         string      `json:"run_id"`
	Volume        string      `json:"volume"`
	Node          string      `json:"node"`
	Meter         Meter       `json:"meter"`
	Quantity      int64       `json:"quantity"`
	WindowStart   string      `json:"window_start"`
	WindowEnd     string      `json:"window_end"`
	ReceivedAt    string      `json:"received_at"`
}

func (w *wireRecord) record(index int) (Record, []batch.Problem) {
	var ps []batch.Problem
	parse := func(field, v string) time.Time {
		if v == "" {
			return time.Time{} // Validate reports required fields.
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			ps = append(ps, batch.Problem{Index: index, Field: field, Reason: fmt.Sprintf("%q is not an RFC 3339 time", batch.Truncate(v))})
		}
		return t.UTC()
	}
	r := Record{
		ID: w.ID, SchemaVersion: w.SchemaVersion, Tenant: w.Tenant, Project: w.Project, App: w.App,
		Environment: w.Environment, ContainerID: w.ContainerID, RunID: w.RunID, Volume: w.Volume,
		Node: w.Node, Meter: w.Meter, Quantity: w.Quantity,
		WindowStart: parse("window_start", w.WindowStart),
		WindowEnd:   parse("window_end", w.WindowEnd),
		ReceivedAt:  parse("received_at", w.ReceivedAt),
	}
	return r, ps
}

func jsonKind(goType string) string {
	switch goType {
	case "int", "int64":
		return "integer"
	case "string", "usage.Meter", "usage.Environment":
		return "string"
	}
	return goType
}
