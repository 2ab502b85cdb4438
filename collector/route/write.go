package route

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// apiError is the body of every error answer: {"error": "...", "detail": ...}.
type apiError struct {
	Error  string `json:"error"`
	Detail any    `json:"detail,omitempty"`
}

// WriteError answers code with msg and, if not nil, detail as JSON.
func WriteError(w http.ResponseWriter, code int, msg string, detail any) {
	WriteJSON(w, code, apiError{Error: msg, Detail: detail})
}

// WriteJSON answers code with v as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the status is sent; a failed write means the client left
}

// FieldError names a bad request parameter.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Quote quotes s, a value from the request, for an error message; it keeps
// 64 bytes of it at most, so a long value does not swell the answer.
func Quote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strconv.Quote(s)
}

// Param names a request parameter in a FieldError: the name as given, cut
// to 64 bytes, or "" (quoted) when empty, so that a problem always names
// something and a long name does not swell the answer.
func Param(name string) string {
	switch {
	case name == "":
		return `""`
	case len(name) > 64:
		return name[:64] + "…"
	}
	return name
}

// ParseTime parses a time parameter: an RFC 3339 time, or a YYYY-MM-DD date
// in loc (the platform's time zone) meaning its midnight.
func ParseTime(v string, loc *time.Location) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), true
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, loc); err == nil {
		return t, true
	}
	return time.Time{}, false
}
