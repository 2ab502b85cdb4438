package collector

import (
	"encoding/json"
	"net/http"
)

// apiError is the body of every error answer: {"error": "...", "detail": ...}.
type apiError struct {
	Error  string `json:"error"`
	Detail any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string, detail any) {
	writeJSON(w, code, apiError{Error: msg, Detail: detail})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the status is sent; a failed write means the client left
}

// fieldError names a bad request parameter.
type fieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}
