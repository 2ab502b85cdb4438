package collector

import (
	"net/http"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// UsageResponse is the answer of GET /api/v1/tenants/{tenant}/usage.
type UsageResponse struct {
	Tenant   string               `json:"tenant"`
	From     time.Time            `json:"from"`
	To       time.Time            `json:"to"`
	TimeZone string               `json:"time_zone"`
	GroupBy  []metering.Dimension `json:"group_by"`
	Rows     []metering.UsageRow  `json:"rows"`
	// Totals has one entry per meter: quantities of different meters do not add up.
	Totals []MeterTotal `json:"totals"`
}

// MeterTotal is the total of one meter over the query.
type MeterTotal struct {
	Meter    usage.Meter `json:"meter"`
	Unit     string      `json:"unit"`
	Quantity usage.Total `json:"quantity"`
	Records  int64       `json:"records"`
}

// getUsage is GET /api/v1/tenants/{tenant}/usage; readquery.Parser.Usage
// reads its parameters.
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q, problems := s.queries.Usage(r.PathValue("tenant"), r.URL.Query())
	if len(problems) > 0 {
		route.WriteError(w, http.StatusBadRequest, "invalid usage query", problems)
		return
	}
	rows, err := s.store.QueryUsage(r.Context(), q)
	if err != nil {
		s.log.Error("usage query failed", "tenant", q.Tenant, "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "usage store unavailable", nil)
		return
	}
	resp := UsageResponse{Tenant: q.Tenant, From: q.From, To: q.To, TimeZone: s.loc.String(), GroupBy: q.GroupBy, Rows: rows,
		Totals: []MeterTotal{}}
	if resp.GroupBy == nil {
		resp.GroupBy = []metering.Dimension{}
	}
	for _, mi := range usage.Meters {
		t := MeterTotal{Meter: mi.Meter, Unit: mi.BaseUnit}
		for _, row := range rows {
			if row.Meter == mi.Meter {
				t.Quantity = t.Quantity.Plus(row.Quantity)
				t.Records += row.Records
			}
		}
		if t.Records > 0 {
			resp.Totals = append(resp.Totals, t)
		}
	}
	route.WriteJSON(w, http.StatusOK, resp)
}
