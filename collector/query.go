package collector

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
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

// getUsage is GET /api/v1/tenants/{tenant}/usage. Parameters:
//
//	month=YYYY-MM                    a calendar month in the platform's time zone, or
//	from=…&to=…                      RFC 3339 times or YYYY-MM-DD dates (to is exclusive);
//	                                 neither: the current month
//	group_by=app,environment,day     any of project, app, environment, meter, day (meter always)
//	project= app= environment= meter=  filters, comma-separated or repeated
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q, problems := s.parseUsageQuery(r.PathValue("tenant"), r.URL.Query())
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

func (s *Server) parseUsageQuery(tenant string, v url.Values) (metering.UsageQuery, []route.FieldError) {
	var problems []route.FieldError
	bad := func(field, format string, args ...any) {
		problems = append(problems, route.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	q := metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: tenant}, Location: s.loc}

	for key := range v {
		switch key {
		case "month", "from", "to", "group_by", "project", "app", "environment", "meter":
		default:
			bad(route.Param(key), "is not a parameter of this endpoint")
		}
	}
	month, from, to := v.Get("month"), v.Get("from"), v.Get("to")
	switch {
	case month != "" && (from != "" || to != ""):
		bad("month", "give either month or from and to, not both")
	case month != "":
		m, err := time.ParseInLocation("2006-01", month, s.loc)
		if err != nil {
			bad("month", "%q is not YYYY-MM", month)
		}
		q.From, q.To = m, m.AddDate(0, 1, 0)
	case from == "" && to == "":
		now := s.clock.Now().In(s.loc)
		q.From = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, s.loc)
		q.To = q.From.AddDate(0, 1, 0)
	default:
		var ok bool
		if q.From, ok = route.ParseTime(from, s.loc); !ok {
			bad("from", "%q is not an RFC 3339 time or a YYYY-MM-DD date", from)
		}
		if q.To, ok = route.ParseTime(to, s.loc); !ok {
			bad("to", "%q is not an RFC 3339 time or a YYYY-MM-DD date", to)
		}
	}
	for _, d := range list(v["group_by"]) {
		if d == "meter" {
			continue // always grouped
		}
		q.GroupBy = append(q.GroupBy, metering.Dimension(d))
	}
	q.Projects, q.Apps = list(v["project"]), list(v["app"])
	for _, e := range list(v["environment"]) {
		if env := usage.Environment(e); !env.Valid() {
			bad("environment", "%q must be one of dev, test, acc, prod", e)
		} else {
			q.Environments = append(q.Environments, env)
		}
	}
	for _, m := range list(v["meter"]) {
		if meter := usage.Meter(m); !meter.Valid() {
			bad("meter", "%q is not a known meter", m)
		} else {
			q.Meters = append(q.Meters, meter)
		}
	}
	if len(problems) == 0 {
		if err := q.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				field, reason, _ := strings.Cut(line, ": ")
				bad(field, "%s", reason)
			}
		}
	}
	return q, problems
}

// list splits repeated and comma-separated parameter values.
func list(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
