package usage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Batch is the wire form of POST /api/v1/usage:
//
//	{"records": [ {record}, … ]}
//
// Records use the JSON field names of Record; times are RFC 3339 with optional
// fractional seconds; quantity is a JSON integer.
type Batch struct {
	Records []Record `json:"records"`
}

// ErrMalformed marks a body that is not a well-formed batch at all (bad JSON,
// wrong envelope). Such errors are not tied to one record.
var ErrMalformed = errors.New("malformed batch")

// TooManyRecordsError is returned when a batch holds more records than allowed.
type TooManyRecordsError struct{ Limit int }

func (e *TooManyRecordsError) Error() string {
	return fmt.Sprintf("records: a batch may hold at most %d records", e.Limit)
}

// InvalidError lists every problem of an invalid batch.
type InvalidError struct {
	Problems []Problem
	// Records is how many records the batch held.
	Records int
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d invalid field(s)", len(e.Problems))
	for i, p := range e.Problems {
		if i == 3 {
			b.WriteString("; …")
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// DecodeBatch reads one batch from r and validates every record as received at
// now. It fails as a whole: either every record is valid and all are returned, or
// the error is an *InvalidError naming each bad record's index, field and reason,
// a *TooManyRecordsError, or wraps ErrMalformed. Unknown fields are rejected.
//
// With an *InvalidError, the records that could be decoded are returned too, for
// accounting (which tenants sent bad data); they must not be stored.
//
// The caller bounds the size of r.
func DecodeBatch(r io.Reader, now time.Time, lim Limits) ([]Record, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()

	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var recs []Record
	var problems []Problem
	seenRecords := false
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, malformed(dec, err)
		}
		if key != "records" {
			return nil, fmt.Errorf("%w: unknown field %q (a batch is {\"records\": [...]})", ErrMalformed, key)
		}
		if seenRecords {
			return nil, fmt.Errorf("%w: field \"records\" appears twice", ErrMalformed)
		}
		seenRecords = true
		if err := expectDelim(dec, '['); err != nil {
			return nil, err
		}
		for i := 0; dec.More(); i++ {
			if i >= lim.MaxRecords {
				return nil, &TooManyRecordsError{Limit: lim.MaxRecords}
			}
			n++
			var w wireRecord
			if err := dec.Decode(&w); err != nil {
				p, ok := fieldProblem(i, err)
				if !ok {
					return nil, malformed(dec, fmt.Errorf("records[%d]: %w", i, err))
				}
				problems = append(problems, p)
				continue
			}
			rec, ps := w.record(i)
			if len(ps) == 0 {
				ps = Validate(&rec, i, now, lim)
			}
			problems = append(problems, ps...)
			recs = append(recs, rec)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: unexpected data after the batch", ErrMalformed)
	}
	if !seenRecords {
		return nil, fmt.Errorf("%w: field \"records\" is required", ErrMalformed)
	}
	if len(problems) > 0 {
		return recs, &InvalidError{Problems: problems, Records: n}
	}
	return recs, nil
}

// EncodeBatch writes recs as a batch.
func EncodeBatch(w io.Writer, recs []Record) error {
	if recs == nil {
		recs = []Record{} // "records": [] — null is not a batch
	}
	return json.NewEncoder(w).Encode(Batch{Records: recs})
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return malformed(dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: expected %q at offset %d, found %v", ErrMalformed, want, dec.InputOffset(), tok)
	}
	return nil
}

func malformed(dec *json.Decoder, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w at offset %d: %w", ErrMalformed, dec.InputOffset(), err)
}

// fieldProblem turns a decoding error that concerns one field of one record into
// a Problem. The json.Decoder has consumed the whole record by then, so decoding
// can go on with the next one and report every bad record at once.
func fieldProblem(index int, err error) (Problem, bool) {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(record)"
		}
		return Problem{Index: index, Field: field, Reason: fmt.Sprintf("%s is not a valid %s", te.Value, jsonKind(te.Type.String()))}, true
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name := truncate(strings.Trim(f, `"`))
		if name == "" {
			name = `""`
		}
		return Problem{Index: index, Field: name, Reason: "is not a field of a usage record"}, true
	}
	return Problem{}, false
}

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

func (w *wireRecord) record(index int) (Record, []Problem) {
	var ps []Problem
	parse := func(field, v string) time.Time {
		if v == "" {
			return time.Time{} // Validate reports required fields.
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			ps = append(ps, Problem{Index: index, Field: field, Reason: fmt.Sprintf("%q is not an RFC 3339 time", truncate(v))})
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
