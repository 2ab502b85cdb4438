package collector

import (
	"net/http"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/readquery"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/logs"
)

// LogsResponse is the answer of GET /api/v1/tenants/{tenant}/logs.
type LogsResponse struct {
	Tenant    string    `json:"tenant"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Direction string    `json:"direction"`
	Lines     []LogLine `json:"lines"`
	// Next continues the query after Lines: pass it as cursor with the same
	// parameters. It is empty when there is no more.
	Next string `json:"next,omitempty"`
}

// LogLine is one line of a LogsResponse.
type LogLine struct {
	Time   time.Time         `json:"time"`
	Labels map[string]string `json:"labels"`
	Line   string            `json:"line"`
	ID     string            `json:"id"`
}

// getLogs is GET /api/v1/tenants/{tenant}/logs; readquery.Parser.Logs reads
// its parameters.
//
// The answer is streamed as the store hands lines over, and ends early, with
// next, once it would pass logs.max_response_bytes.
func (s *Server) getLogs(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q, problems := s.queries.Logs(r.PathValue("tenant"), r.URL.Query())
	if len(problems) > 0 {
		route.WriteError(w, http.StatusBadRequest, "invalid logs query", problems)
		return
	}
	done, ok := s.readSlot(w, q.Tenant)
	if !ok {
		return
	}
	s.deliverBy(w)
	const tail = "]}"
	a := newStreamedAnswer(w, LogsResponse{Tenant: q.Tenant, From: q.From, To: q.To, Direction: direction(q.Forward), Lines: []LogLine{}}, tail, s.cfg.Logs.MaxResponseBytes)
	defer func() { done(a.written) }()
	next, err := s.store.ScanLogs(r.Context(), q, func(l logs.Line) bool {
		var sep []byte
		if a.parts > 0 {
			sep = comma
		}
		return a.add(sep, a.marshal(LogLine{Time: l.Time, Labels: l.Labels, Line: l.Line, ID: l.ID}))
	})
	end := tail
	if next != "" {
		// Next is a field of LogsResponse, after Lines.
		end = `],"next":` + string(a.marshal(readquery.SealCursor(q.Tenant, next))) + "}"
	}
	s.finishAnswer(a, end+"\n", err, q.Tenant)
}

func direction(forward bool) string {
	if forward {
		return "forward"
	}
	return "backward"
}
