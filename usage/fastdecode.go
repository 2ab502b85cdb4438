package usage

import (
	"strconv"
	"time"

	"github.com/paasmeter/paasmeter/batch"
)

// decodeFast decodes a batch whose records are all well-formed and valid, the
// case every agent's batch is in, without encoding/json's reflection, which
// took most of the collector's CPU (docs/benchmarks.md). It says ok=false for
// anything else: a key other than the exact field names, a repeated key, a
// string it would have to unescape or that is not ASCII, a number that is not
// a plain integer, a null, too many records, an invalid record. The caller
// then decodes the same bytes with the general decoder, which accepts what
// JSON allows and names every problem; decodeFast never accepts what that
// decoder would not, nor decodes anything differently (FuzzFastDecode checks).
func decodeFast(data []byte, now time.Time, lim Limits) (recs []Record, ok bool) {
	s := scanner{b: data, text: string(data)}
	if !s.byte('{') || string(s.raw()) != "records" || !s.byte(':') || !s.byte('[') {
		return nil, false
	}
	if !s.byte(']') {
		// An agent's record takes about 330 bytes of JSON: room for all of
		// them, and rarely much more.
		recs = make([]Record, 0, min(lim.MaxRecords, len(data)/300+1))
		for {
			if len(recs) == lim.MaxRecords {
				return nil, false
			}
			var r Record
			if !s.record(&r, len(recs)) || len(Validate(&r, len(recs), now, lim)) > 0 {
				return nil, false
			}
			recs = append(recs, r)
			if s.byte(']') {
				break
			}
			if !s.byte(',') {
				return nil, false
			}
		}
	}
	if !s.byte('}') {
		return nil, false
	}
	s.space()
	return recs, !s.bad && s.i == len(s.b)
}

// scanner reads the subset of JSON decodeFast accepts. Once something does
// not fit, bad turns true and stays so.
type scanner struct {
	b []byte
	// text is b as one string: the strings of every record of a batch are
	// cut from it, not allocated one by one (ten allocations a record, and
	// the collector's garbage collection after them, cost more than the copy).
	text string
	i    int
	bad  bool
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// byte consumes c after optional space, and reports whether it was there.
func (s *scanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (s *scanner) str() string {
	b := s.raw()
	if s.bad {
		return ""
	}
	end := s.i - 1 // the closing quote
	return s.text[end-len(b) : end]
}

// raw reads a string like str, and returns its bytes in the input.
func (s *scanner) raw() []byte {
	if !s.byte('"') {
		s.bad = true
		return nil
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1]
		case c < 0x20 || c == '\\' || c >= 0x80:
			s.bad = true
			return nil
		}
		s.i++
	}
	s.bad = true
	return nil
}

// int reads an integer: -?(0|[1-9][0-9]*), not followed by a fraction or an exponent.
func (s *scanner) int() int64 {
	s.space()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || (s.b[digits] == '0' && s.i-digits > 1) ||
		(s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E')) {
		s.bad = true
		return 0
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		s.bad = true
	}
	return v
}

// The fields of a record, as bits of a set of those seen.
const (
	fieldID uint = iota
	fieldSchemaVersion
	fieldTenant
	fieldProject
	fieldApp
	fieldEnvironment
	fieldContainerID
	fieldRunID
	fieldVolume
	fieldNode
	fieldMeter
	fieldQuantity
	fieldWindowStart
	fieldWindowEnd
	fieldReceivedAt
)

// field returns the bit of a record's field, or false for a name that is not one.
func field(name []byte) (uint, bool) {
	switch string(name) { // no copy: the compiler compares the bytes
	case "id":
		return fieldID, true
	case "schema_version":
		return fieldSchemaVersion, true
	case "tenant":
		return fieldTenant, true
	case "project":
		return fieldProject, true
	case "app":
		return fieldApp, true
	case "environment":
		return fieldEnvironment, true
	case "container_id":
		return fieldContainerID, true
	case "run_id":
		return fieldRunID, true
	case "volume":
		return fieldVolume, true
	case "node":
		return fieldNode, true
	case "meter":
		return fieldMeter, true
	case "quantity":
		return fieldQuantity, true
	case "window_start":
		return fieldWindowStart, true
	case "window_end":
		return fieldWindowEnd, true
	case "received_at":
		return fieldReceivedAt, true
	}
	return 0, false
}

// record reads one record object into r. index names it to batch.ParseTime.
func (s *scanner) record(r *Record, index int) bool {
	if !s.byte('{') {
		return false
	}
	if s.byte('}') {
		return true // every field zero: Validate says what is missing
	}
	var seen uint
	var start, end, received string
	for {
		bit, known := field(s.raw())
		if !known || seen&(1<<bit) != 0 || !s.byte(':') {
			return false
		}
		seen |= 1 << bit
		switch bit {
		case fieldID:
			r.ID = s.str()
		case fieldSchemaVersion:
			v := s.int()
			if r.SchemaVersion = int(v); int64(r.SchemaVersion) != v {
				return false
			}
		case fieldTenant:
			r.Tenant = s.str()
		case fieldProject:
			r.Project = s.str()
		case fieldApp:
			r.App = s.str()
		case fieldEnvironment:
			r.Environment = Environment(s.str())
		case fieldContainerID:
			r.ContainerID = s.str()
		case fieldRunID:
			r.RunID = s.str()
		case fieldVolume:
			r.Volume = s.str()
		case fieldNode:
			r.Node = s.str()
		case fieldMeter:
			r.Meter = Meter(s.str())
		case fieldQuantity:
			r.Quantity = s.int()
		case fieldWindowStart:
			start = s.str()
		case fieldWindowEnd:
			end = s.str()
		case fieldReceivedAt:
			received = s.str()
		}
		if s.bad {
			return false
		}
		if s.byte('}') {
			break
		}
		if !s.byte(',') {
			return false
		}
	}
	var ps []batch.Problem
	r.WindowStart = batch.ParseTime(index, "window_start", start, &ps)
	r.WindowEnd = batch.ParseTime(index, "window_end", end, &ps)
	r.ReceivedAt = batch.ParseTime(index, "received_at", received, &ps)
	return len(ps) == 0
}
