// Package lokipush decodes the body of a Loki push request (POST
// /loki/api/v1/push) in both of Loki's encodings: snappy-compressed protobuf
// (what Promtail, Alloy and loki-client-go send) and JSON. It uses only the
// Apache-2.0 module github.com/grafana/loki/pkg/push, never Loki itself.
package lokipush

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/paasmeter/paasmeter/internal/jsonkey"
	"github.com/paasmeter/paasmeter/logs/logql"
)

// Stream is one stream of a push: its labels and its entries in push order.
// Structured metadata, which Loki 3 clients may attach to entries, is not kept.
type Stream struct {
	Labels  map[string]string
	Entries []Entry
}

// Entry is one line of a stream.
type Entry struct {
	Time time.Time
	Line string
}

// The content types of the two encodings.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"
)

// ErrMediaType is returned for a Content-Type that is neither encoding.
var ErrMediaType = errors.New("unsupported media type")

// ErrTooLarge is returned when a snappy body would decompress past the limit.
var ErrTooLarge = errors.New("push too large")

// Decode decodes a push body of contentType; an empty Content-Type is taken
// for protobuf, as Loki does. maxBytes bounds the decompressed size, which
// snappy states before decompressing, so a small bomb costs nothing.
func Decode(body []byte, contentType string, maxBytes int64) ([]Stream, error) {
	mt := ""
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, fmt.Errorf("%w: Content-Type %q: %w", ErrMediaType, contentType, err)
		}
	}
	switch mt {
	case "", ContentTypeProtobuf:
		return decodeProtobuf(body, maxBytes)
	case ContentTypeJSON:
		return decodeJSON(body)
	}
	return nil, fmt.Errorf("%w: Content-Type %q (use %s with snappy, or %s)", ErrMediaType, contentType, ContentTypeProtobuf, ContentTypeJSON)
}

func decodeProtobuf(body []byte, maxBytes int64) ([]Stream, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, fmt.Errorf("body is not snappy-compressed: %w", err)
	}
	if int64(n) > maxBytes {
		return nil, fmt.Errorf("%w: decompresses to %d bytes, over the limit of %d", ErrTooLarge, n, maxBytes)
	}
	// A fresh buffer per request: the decoded strings alias it.
	raw, err := snappy.Decode(make([]byte, n), body)
	if err != nil {
		return nil, fmt.Errorf("body is not snappy-compressed: %w", err)
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("body is not a Loki PushRequest: %w", err)
	}
	out := make([]Stream, len(req.Streams))
	for i, s := range req.Streams {
		labels, err := logql.ParseLabels(s.Labels)
		if err != nil {
			return nil, fmt.Errorf("streams[%d]: labels %q: %w", i, truncate(s.Labels), err)
		}
		out[i] = Stream{Labels: labels, Entries: make([]Entry, len(s.Entries))}
		for j, e := range s.Entries {
			out[i].Entries[j] = Entry{Time: e.Timestamp.UTC(), Line: validUTF8(e.Line)}
		}
	}
	return out, nil
}

// jsonPush is Loki's JSON push body:
// {"streams": [{"stream": {"app": "x"}, "values": [["<unix ns>", "line"], …]}]}.
// A value may carry a third element, structured metadata, which is ignored.
// A stream may instead come in Loki's legacy form, {"labels": "{app=\"x\"}",
// "entries": [{"ts": "<RFC 3339>", "line": "…"}]}, which is what
// loki-client-go sends when told to encode JSON.
type jsonPush struct {
	Streams []struct {
		Stream map[string]string   `json:"stream"`
		Values [][]json.RawMessage `json:"values"`
		// The legacy form.
		Labels  *string `json:"labels"`
		Entries []struct {
			Time time.Time `json:"ts"`
			Line string    `json:"line"`
		} `json:"entries"`
	} `json:"streams"`
}

func decodeJSON(body []byte) ([]Stream, error) {
	var req jsonPush
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("body is not a Loki JSON push: %w", err)
	}
	if key, ok := jsonkey.Repeated(body); ok {
		return nil, fmt.Errorf("%s: repeats a key of its object (keys are matched ignoring case): each may appear once", truncate(key))
	}
	out := make([]Stream, len(req.Streams))
	for i, s := range req.Streams {
		if s.Labels != nil || s.Entries != nil {
			if s.Stream != nil || s.Values != nil {
				return nil, fmt.Errorf("streams[%d]: has both stream/values and the legacy labels/entries", i)
			}
			var labels string
			if s.Labels != nil {
				labels = *s.Labels
			}
			ls, err := logql.ParseLabels(labels)
			if err != nil {
				return nil, fmt.Errorf("streams[%d]: labels %q: %w", i, truncate(labels), err)
			}
			out[i] = Stream{Labels: ls, Entries: make([]Entry, len(s.Entries))}
			for j, e := range s.Entries {
				out[i].Entries[j] = Entry{Time: e.Time.UTC(), Line: e.Line}
			}
			continue
		}
		if s.Stream == nil {
			s.Stream = map[string]string{}
		}
		out[i] = Stream{Labels: s.Stream, Entries: make([]Entry, len(s.Values))}
		for j, v := range s.Values {
			at := fmt.Sprintf("streams[%d].values[%d]", i, j)
			if len(v) < 2 || len(v) > 3 {
				return nil, fmt.Errorf("%s: a value is [\"<unix ns>\", \"<line>\"] (and optional metadata), not %d elements", at, len(v))
			}
			var ts, line string
			if err := json.Unmarshal(v[0], &ts); err != nil {
				return nil, fmt.Errorf("%s: the timestamp must be a string of Unix nanoseconds: %w", at, err)
			}
			ns, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: timestamp %q is not Unix nanoseconds", at, truncate(ts))
			}
			if err := json.Unmarshal(v[1], &line); err != nil {
				return nil, fmt.Errorf("%s: the line must be a string: %w", at, err)
			}
			out[i].Entries[j] = Entry{Time: time.Unix(0, ns).UTC(), Line: line}
		}
	}
	return out, nil
}

// validUTF8 replaces invalid bytes as encoding/json does for a JSON push, so
// an application's stray byte costs a character, not its line.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
