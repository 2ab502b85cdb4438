// Package batch is the wire envelope shared by every kind of record agents send
// (usage records, events): {"records": [ … ]}, decoded as a stream with every
// bad record reported by index and field, and refused as a whole.
package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/paasmeter/paasmeter/internal/jsonkey"
)

// ErrMalformed marks a body that is not a well-formed batch at all (bad JSON,
// wrong envelope). Such errors are not tied to one record.
var ErrMalformed = errors.New("malformed batch")

// TooManyError is returned when a batch holds more records than allowed.
type TooManyError struct{ Limit int }

func (e *TooManyError) Error() string {
	return fmt.Sprintf("records: a batch may hold at most %d records", e.Limit)
}

// Problem is one reason a record is invalid.
type Problem struct {
	// Index is the record's position in its batch.
	Index int `json:"index"`
	// Field is the JSON name of the offending field.
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	return fmt.Sprintf("records[%d].%s: %s", p.Index, p.Field, p.Reason)
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

// Decode reads one batch from r. Each element of "records" is decoded into a
// fresh W, rejecting unknown fields and repeated keys, and handed to each with its index; each
// returns that record's problems (none when valid). Decoding goes on past bad
// records so that all of them are reported at once.
//
// The result is nil when every record was valid, an *InvalidError naming each
// problem, a *TooManyError past max records, or an error wrapping ErrMalformed.
// The caller bounds the size of r.
func Decode[W any](r io.Reader, max int, each func(index int, w *W) []Problem) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()

	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	var problems []Problem
	seenRecords := false
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return malformed(dec, err)
		}
		if key != "records" {
			return fmt.Errorf("%w: unknown field %q (a batch is {\"records\": [...]})", ErrMalformed, key)
		}
		if seenRecords {
			return fmt.Errorf("%w: field \"records\" appears twice", ErrMalformed)
		}
		seenRecords = true
		if err := expectDelim(dec, '['); err != nil {
			return err
		}
		for i := 0; dec.More(); i++ {
			if i >= max {
				return &TooManyError{Limit: max}
			}
			n++
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return malformed(dec, fmt.Errorf("records[%d]: %w", i, err))
			}
			if key, ok := jsonkey.Repeated(raw); ok {
				problems = append(problems, Problem{Index: i, Field: Truncate(key), Reason: "repeats a key of its object (keys are matched ignoring case): each may appear once"})
				continue
			}
			var w W
			if err := decodeStrict(raw, &w); err != nil {
				p, ok := fieldProblem(i, err)
				if !ok {
					return malformed(dec, fmt.Errorf("records[%d]: %w", i, err))
				}
				problems = append(problems, p)
				continue
			}
			problems = append(problems, each(i, &w)...)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: unexpected data after the batch", ErrMalformed)
	}
	if !seenRecords {
		return fmt.Errorf("%w: field \"records\" is required", ErrMalformed)
	}
	if len(problems) > 0 {
		return &InvalidError{Problems: problems, Records: n}
	}
	return nil
}

// decodeStrict decodes one record, refusing unknown fields.
func decodeStrict(raw json.RawMessage, w any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(w)
}

// Encode writes recs as a batch.
func Encode[T any](w io.Writer, recs []T) error {
	if recs == nil {
		recs = []T{} // "records": [] — null is not a batch
	}
	return json.NewEncoder(w).Encode(struct {
		Records []T `json:"records"`
	}{recs})
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
// can go on with the next one.
func fieldProblem(index int, err error) (Problem, bool) {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// Records decode through wrappers that embed the record type, and
		// encoding/json names embedded structs by their Go type: drop those parts.
		var parts []string
		for _, p := range strings.Split(te.Field, ".") {
			if p != "" && !unicode.IsUpper(rune(p[0])) {
				parts = append(parts, p)
			}
		}
		field := strings.Join(parts, ".")
		if field == "" {
			field = "(record)"
		}
		return Problem{Index: index, Field: field, Reason: fmt.Sprintf("%s is not a valid %s", te.Value, jsonKind(te.Type.Kind().String()))}, true
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name := Truncate(strings.Trim(f, `"`))
		if name == "" {
			name = `""`
		}
		return Problem{Index: index, Field: name, Reason: "is not a field of this record"}, true
	}
	return Problem{}, false
}

func jsonKind(kind string) string {
	switch kind {
	case "int", "int64", "int32", "uint64":
		return "integer"
	case "bool":
		return "boolean"
	case "struct":
		return "object"
	}
	return kind
}

// Stamped is the wire form W of a record T that carries its "time" and
// "received_at" as strings (see ParseTime).
type Stamped[T, W any] interface {
	*W
	// Times returns the raw "time" and "received_at".
	Times() (t, receivedAt string)
	// Stamp returns the record with its parsed times set.
	Stamp(t, receivedAt time.Time) T
}

// DecodeStamped is Decode for records with string times: it parses both times
// of each record and, when they parse, hands the record to validate, so that
// every kind of stamped record is decoded the same way. It returns the records
// in order, valid or not, with Decode's error.
func DecodeStamped[T, W any, PW Stamped[T, W]](r io.Reader, max int, validate func(rec *T, index int) []Problem) ([]T, error) {
	var recs []T
	err := Decode(r, max, func(i int, w *W) []Problem {
		var ps []Problem
		raw, rawReceived := PW(w).Times()
		rec := PW(w).Stamp(ParseTime(i, "time", raw, &ps), ParseTime(i, "received_at", rawReceived, &ps))
		if len(ps) == 0 {
			ps = validate(&rec, i)
		}
		recs = append(recs, rec)
		return ps
	})
	return recs, err
}

// ParseTime parses an RFC 3339 time of a record's field; "" gives the zero
// time (the record's own validation reports required fields). Records decode
// their times as strings through it because encoding/json does not name the
// field when time.Time's own decoder fails.
func ParseTime(index int, field, v string, problems *[]Problem) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		*problems = append(*problems, Problem{Index: index, Field: field, Reason: fmt.Sprintf("%q is not an RFC 3339 time", Truncate(v))})
	}
	return t.UTC()
}

// Truncate shortens s for an error message, so a huge bad value cannot blow up
// the answer.
func Truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
