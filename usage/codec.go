package usage

import (
	"bytes"
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
	data, err := readAll(r)
	if err == nil {
		if recs, ok := decodeFast(data, now, lim); ok {
			return recs, nil
		}
	}
	// The general decoder reads the same bytes, then meets the same read
	// error (a body past its limit), as it would have reading r itself.
	var src io.Reader = bytes.NewReader(data)
	if err != nil {
		src = io.MultiReader(src, failingReader{err})
	}
	return decodeGeneral(src, now, lim)
}

// readAll is io.ReadAll, but a reader that writes itself out (a body that
// the collector holds in memory already) is copied once, into a buffer of its
// size, where io.ReadAll grows one as it goes and copies a batch several times.
func readAll(r io.Reader) ([]byte, error) {
	wt, ok := r.(io.WriterTo)
	if !ok {
		return io.ReadAll(r)
	}
	var b bytes.Buffer
	_, err := wt.WriteTo(&b)
	return b.Bytes(), err
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// decodeGeneral is DecodeBatch for any input: encoding/json, every problem named.
func decodeGeneral(r io.Reader, now time.Time, lim Limits) ([]Record, error) {
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

// wireRecord is Record as decoded from outside input: its times are strings,
// parsed by batch.ParseTime so a bad one is reported with its field name.
type wireRecord struct {
	Record
	WindowStart string `json:"window_start"`
	WindowEnd   string `json:"window_end"`
	ReceivedAt  string `json:"received_at"`
}

func (w *wireRecord) record(index int) (Record, []batch.Problem) {
	var ps []batch.Problem
	r := w.Record
	r.WindowStart = batch.ParseTime(index, "window_start", w.WindowStart, &ps)
	r.WindowEnd = batch.ParseTime(index, "window_end", w.WindowEnd, &ps)
	r.ReceivedAt = batch.ParseTime(index, "received_at", w.ReceivedAt, &ps)
	return r, ps
}
