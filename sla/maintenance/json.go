package maintenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/internal/jsonkey"
	"github.com/paasmeter/paasmeter/sla"
)

// declarationJSON is a declaration as the admin API and `paasmeter
// maintenance list --format json` show it, and as the API takes it: times
// in RFC 3339, the duration as Go spells it ("2h", "90m").
type declarationJSON struct {
	ID         string          `json:"id,omitempty"`
	Tenant     string          `json:"tenant,omitempty"`
	Project    string          `json:"project,omitempty"`
	App        string          `json:"app,omitempty"`
	Start      string          `json:"start"`
	Duration   string          `json:"duration"`
	Recurrence *recurrenceJSON `json:"recurrence,omitempty"`
	Reason     string          `json:"reason"`
	// DeclaredAt and Source are the server's: shown, and ignored on input
	// so that a client may send back what it read.
	DeclaredAt string `json:"declared_at,omitempty"`
	Cancelled  bool   `json:"cancelled"`
	Version    int64  `json:"version"`
	Source     string `json:"source,omitempty"`
}

type recurrenceJSON struct {
	Every string `json:"every"`
	Until string `json:"until,omitempty"`
}

// MarshalJSON writes d in the admin API's form.
func (d Declaration) MarshalJSON() ([]byte, error) {
	j := declarationJSON{ID: d.ID, Tenant: d.Scope.Tenant, Project: d.Scope.Project, App: d.Scope.App, Start: formatTime(d.Start),
		Duration: d.Duration.String(), Reason: d.Reason, DeclaredAt: formatTime(d.DeclaredAt), Cancelled: d.Cancelled,
		Version: d.Version, Source: d.Source}
	if r := d.Recurrence; r != nil {
		j.Recurrence = &recurrenceJSON{Every: r.Every, Until: formatTime(r.Until)}
	}
	return json.Marshal(j)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// DecodeDeclaration reads a declaration in the admin API's form: one JSON
// object, with no field the form lacks. It checks the syntax of each field
// (JSON types, RFC 3339 times, Go durations, no repeated key) and nothing else: Check does.
// Every error is a *FieldError naming the field ("body" for JSON that is
// not an object). DeclaredAt and Source are ignored: they are the server's.
func DecodeDeclaration(data []byte) (Declaration, error) {
	// null, a number or an array would decode into nothing or fail with a
	// message about Go types: say what the body must be instead.
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Declaration{}, refuse("body", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var j declarationJSON
	if err := dec.Decode(&j); err != nil {
		return Declaration{}, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Declaration{}, refuse("body", "has more after the JSON object")
	}
	if err := unknownField(data); err != nil {
		return Declaration{}, err
	}
	if key, ok := jsonkey.Repeated(data); ok {
		return Declaration{}, refuse(clip(key), "repeats a key of its object (keys are matched ignoring case): each may appear once")
	}
	d := Declaration{ID: j.ID, Scope: sla.Scope{Tenant: j.Tenant, Project: j.Project, App: j.App}, Reason: j.Reason,
		Cancelled: j.Cancelled, Version: j.Version}
	var err error
	if d.Start, err = parseTime("start", j.Start); err != nil {
		return Declaration{}, err
	}
	if j.Duration != "" {
		if d.Duration, err = time.ParseDuration(j.Duration); err != nil {
			return Declaration{}, refuse("duration", "%q is not a duration such as \"2h\" or \"90m\"", clip(j.Duration))
		}
	}
	if r := j.Recurrence; r != nil {
		d.Recurrence = &Recurrence{Every: r.Every}
		if d.Recurrence.Until, err = parseTime("recurrence.until", r.Until); err != nil {
			return Declaration{}, err
		}
	}
	return d, nil
}

// parseTime parses an RFC 3339 time; empty is the zero time, which Check
// refuses where a time is required.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, refuse(field, "%q is not an RFC 3339 time such as 2026-12-10T22:00:00+01:00", clip(s))
	}
	return t, nil
}

// jsonError names the field of a decoding error.
func jsonError(err error) *FieldError {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return refuse(typeErr.Field, "must be a JSON %s, not %s", jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return refuse("body", "is not JSON: %v (at byte %d)", err, syntaxErr.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return refuse("body", "is empty or cut short: want a JSON object")
	}
	return refuse("body", "%v", err)
}

// The fields of the admin API's form.
var (
	fields           = jsonFields(declarationJSON{})
	recurrenceFields = jsonFields(recurrenceJSON{})
)

func jsonFields(v any) map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		m[name] = true
	}
	return m
}

// unknownField names the first field, in byte order, of data (a decoded
// object) that the form lacks. encoding/json's DisallowUnknownFields would
// not name a nested one with its path, and matches names in any case:
// "Start" is refused here, not taken for start.
func unknownField(data []byte) *FieldError {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return refuse("body", "is not a JSON object")
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		if !fields[k] {
			return unknown(k)
		}
	}
	var rec map[string]json.RawMessage
	if r := top["recurrence"]; r != nil && json.Unmarshal(r, &rec) == nil {
		for _, k := range slices.Sorted(maps.Keys(rec)) {
			if !recurrenceFields[k] {
				return unknown("recurrence." + k)
			}
		}
	}
	return nil
}

func unknown(field string) *FieldError {
	if strings.TrimSuffix(field, ".") == "" || strings.HasSuffix(field, ".") {
		return refuse("body", "has a field without a name")
	}
	return refuse(field, "is not a field of a maintenance window")
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "ptr", "struct":
		return "object"
	}
	return "number"
}

// clip keeps an echoed value short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// String is a one-line description of d, for logs and the command line.
func (d Declaration) String() string {
	scope := "platform"
	switch {
	case d.Scope.App != "":
		scope = d.Scope.Tenant + "/" + d.Scope.Project + "/" + d.Scope.App
	case d.Scope.Tenant != "":
		scope = d.Scope.Tenant
	}
	s := fmt.Sprintf("%s %s %s for %s", d.ID, scope, d.Start.Format(time.RFC3339), d.Duration)
	if r := d.Recurrence; r != nil {
		s += ", " + r.Every
		if !r.Until.IsZero() {
			s += " until " + r.Until.Format(time.RFC3339)
		}
	}
	if d.Cancelled {
		s += ", cancelled"
	}
	return s
}
