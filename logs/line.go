// Package logs is the log-line contract: one line of one stream, the stream
// named by its labels as in Loki, owned by one institution. The agent's lines
// carry the platform's labels (LabelProject … LabelStream); lines pushed
// through the Loki API carry whatever labels their client sets. Lines are
// deduplicated like usage records: a deterministic id, first arrival kept.
package logs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/usage"
)

// SchemaVersion is the version of the line encoding this build writes; the
// collector accepts MinSchemaVersion..SchemaVersion.
const (
	SchemaVersion    = 1
	MinSchemaVersion = 1
)

// The labels the agent sets on a container's lines.
const (
	LabelProject   = "project"
	LabelApp       = "app"
	LabelEnv       = "env"
	LabelNode      = "node"
	LabelContainer = "container"
	// LabelStream is stdout or stderr.
	LabelStream = "stream"
)

// Line is one log line.
type Line struct {
	ID            string `json:"id"`
	SchemaVersion int    `json:"schema_version"`
	Tenant        string `json:"tenant"`
	// Labels name the line's stream.
	Labels map[string]string `json:"labels"`
	Time   time.Time         `json:"time"`
	// Seq orders the lines of one stream that share a Time (0 for the first).
	Seq  int    `json:"seq,omitempty"`
	Line string `json:"line"`
	// ReceivedAt is stamped by the collector on first arrival.
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// Limits bound what one line may carry (Loki's kind of limits).
type Limits struct {
	// MaxLineBytes is the longest line; senders truncate with Truncate.
	MaxLineBytes int
	// MaxLabels is the most labels of a stream; MaxLabelNameBytes and
	// MaxLabelValueBytes bound each.
	MaxLabels, MaxLabelNameBytes, MaxLabelValueBytes int
	// MaxLines is the most lines in one batch.
	MaxLines int
	// FutureSkew and Horizon bound a line's time around the receiver's clock.
	FutureSkew, Horizon time.Duration
}

// DefaultLimits are Loki's defaults where it has them (line size 256 KiB,
// 15 labels, names of 1024 and values of 2048 bytes).
func DefaultLimits() Limits {
	return Limits{MaxLineBytes: 256 << 10, MaxLabels: 15, MaxLabelNameBytes: 1024, MaxLabelValueBytes: 2048,
		MaxLines: 10000, FutureSkew: 5 * time.Minute, Horizon: 400 * 24 * time.Hour}
}

// TruncationMarker ends a line that was cut to the size limit; %d is the
// number of bytes cut.
const TruncationMarker = " …[truncated %d bytes]"

// Truncate cuts s to at most limit bytes, marker included, on a UTF-8 boundary,
// and says so at its end. It returns s unchanged when it fits.
func Truncate(s string, limit int) (string, bool) { return TruncateOf(s, len(s), limit) }

// TruncateOf is Truncate for a line of which a reader kept only the first
// bytes, s, to bound its memory: total is the whole line's length, and the
// marker counts every byte cut, kept or not.
func TruncateOf(s string, total, limit int) (string, bool) {
	if total <= limit && len(s) == total {
		return s, false
	}
	// The marker's length depends on the count it shows: reserve for the largest.
	keep := min(len(s), max(0, limit-len(fmt.Sprintf(TruncationMarker, total))))
	for keep > 0 && keep < len(s) && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + fmt.Sprintf(TruncationMarker, total-keep), true
}

// StreamKey is the canonical form of a label set: `{a="1", b="2"}` with the
// names sorted, as Loki prints streams.
func StreamKey(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	b := []byte{'{'}
	for i, n := range names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, n...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, labels[n])
	}
	return string(append(b, '}'))
}

// DeriveID returns the deterministic id of l: a hash of its tenant, stream,
// time, sequence and text, so the same line read twice (an agent that
// re-reads after a crash, a client that retries a push) has one id.
func DeriveID(l *Line) string { return deriveID(l, StreamKey(l.Labels)) }

func deriveID(l *Line, streamKey string) string {
	h := sha256.New()
	var num [20]byte
	for _, b := range [][]byte{[]byte("paasmeter.log.v1"), []byte(l.Tenant), []byte(streamKey),
		strconv.AppendInt(num[:0], l.Time.UnixNano(), 10), []byte(strconv.Itoa(l.Seq)), []byte(l.Line)} {
		h.Write(b)
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:usage.IDLength/2])
}

// SetID derives and sets l.ID.
func (l *Line) SetID() { l.ID = DeriveID(l) }

// SetIDOfStream derives and sets l.ID when the caller already has the
// stream's key, StreamKey(l.Labels): lines of one stream share it, and
// computing it per line is most of the cost of an id.
func (l *Line) SetIDOfStream(streamKey string) { l.ID = deriveID(l, streamKey) }

// validLabelName reports whether s is a Prometheus (and Loki) label name,
// [a-zA-Z_][a-zA-Z0-9_]*, without a regexp: it runs for every label of every
// line an agent sends.
func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// Validate checks l as received at now and returns every problem, tagged
// with index: its labels (ValidateLabels), its own fields (CheckEntry) and its id.
func Validate(l *Line, index int, now time.Time, lim Limits) []batch.Problem {
	ps := ValidateLabels(index, l.Labels, lim)
	ps = append(ps, CheckEntry(l, index, now, lim)...)
	switch want := DeriveID(l); {
	case l.ID == "":
		ps = append(ps, batch.Problem{Index: index, Field: "id", Reason: "is required"})
	case l.ID != want:
		ps = append(ps, batch.Problem{Index: index, Field: "id", Reason: fmt.Sprintf("%q is not the id of this line (want %s)", batch.Truncate(l.ID), want)})
	}
	return ps
}

// CheckEntry checks what belongs to the line itself rather than its stream
// or id: schema version, tenant, time, sequence, text, received_at. A
// receiver that validated the stream's labels once and set the ids itself
// (the Loki push) needs only this per line.
func CheckEntry(l *Line, index int, now time.Time, lim Limits) []batch.Problem {
	var ps []batch.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, batch.Problem{Index: index, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if l.SchemaVersion < MinSchemaVersion || l.SchemaVersion > SchemaVersion {
		add("schema_version", "%d is not supported (this collector accepts %d to %d)", l.SchemaVersion, MinSchemaVersion, SchemaVersion)
	}
	if len(usage.ValidateLabels(0, l.Tenant, "p", "a", usage.EnvDev, "n")) > 0 {
		add("tenant", "%q must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", batch.Truncate(l.Tenant))
	}
	switch {
	case l.Time.IsZero():
		add("time", "is required")
	case l.Time.After(now.Add(lim.FutureSkew)):
		add("time", "%s is more than %s in the future", l.Time.Format(time.RFC3339Nano), lim.FutureSkew)
	case l.Time.Before(now.Add(-lim.Horizon)):
		add("time", "%s is older than the horizon of %s", l.Time.Format(time.RFC3339Nano), lim.Horizon)
	}
	if l.Seq < 0 {
		add("seq", "%d is negative", l.Seq)
	}
	if len(l.Line) > lim.MaxLineBytes {
		add("line", "is %d bytes, over the limit of %d", len(l.Line), lim.MaxLineBytes)
	}
	if !utf8.ValidString(l.Line) {
		add("line", "is not valid UTF-8")
	}
	if !l.ReceivedAt.IsZero() {
		add("received_at", "is set by the collector and must be empty")
	}
	return ps
}

// ValidateLabels checks a stream's labels against lim.
func ValidateLabels(index int, labels map[string]string, lim Limits) []batch.Problem {
	var ps []batch.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, batch.Problem{Index: index, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if len(labels) == 0 {
		add("labels", "a stream needs at least one label")
	}
	if len(labels) > lim.MaxLabels {
		add("labels", "%d labels, over the limit of %d", len(labels), lim.MaxLabels)
	}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names) // problems in a stable order
	for _, n := range names {
		v := labels[n]
		switch {
		case len(n) > lim.MaxLabelNameBytes:
			add("labels", "label name %q is longer than %d bytes", batch.Truncate(n), lim.MaxLabelNameBytes)
		case !validLabelName(n):
			add("labels", "label name %q must match [a-zA-Z_][a-zA-Z0-9_]*", batch.Truncate(n))
		case len(v) > lim.MaxLabelValueBytes:
			add("labels", "the value of %s is longer than %d bytes", n, lim.MaxLabelValueBytes)
		case v == "":
			add("labels", "the value of %s is empty", n)
		case !utf8.ValidString(v):
			add("labels", "the value of %s is not valid UTF-8", n)
		}
	}
	return ps
}

// DecodeBatch reads one batch of lines (package batch) and validates each as
// received at now, as usage.DecodeBatch does for records.
func DecodeBatch(r io.Reader, now time.Time, lim Limits) ([]Line, error) {
	return batch.DecodeStamped[Line, wireLine](r, lim.MaxLines, func(l *Line, i int) []batch.Problem {
		return Validate(l, i, now, lim)
	})
}

// wireLine is Line as decoded from outside input, with string times (see batch.ParseTime).
type wireLine struct {
	Line
	Time       string `json:"time"`
	ReceivedAt string `json:"received_at"`
}

// Times implements batch.Stamped.
func (w *wireLine) Times() (string, string) { return w.Time, w.ReceivedAt }

// Stamp implements batch.Stamped.
func (w *wireLine) Stamp(t, receivedAt time.Time) Line {
	l := w.Line
	l.Time, l.ReceivedAt = t, receivedAt
	return l
}

// EncodeBatch writes lines as a batch.
func EncodeBatch(w io.Writer, lines []Line) error { return batch.Encode(w, lines) }
