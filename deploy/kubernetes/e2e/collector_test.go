package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/sla/slahttp"
	"github.com/paasmeter/paasmeter/usage"
)

// api reads an institution's data from the collector's tenant API, with
// that institution's token.
type api struct {
	url, tenant, token string
}

// get decodes the JSON answer of path?q into into.
func (a api) get(ctx context.Context, path string, q url.Values, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := a.url + "/api/v1/tenants/" + a.tenant + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// usageByApp returns the institution's usage of windows starting in
// [from, to), by project/app and meter.
func (a api) usageByApp(ctx context.Context, from, to time.Time) (map[string]map[usage.Meter]int64, error) {
	var resp collector.UsageResponse
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}, "group_by": {"project,app"}}
	if err := a.get(ctx, "/usage", q, &resp); err != nil {
		return nil, err
	}
	out := map[string]map[usage.Meter]int64{}
	for _, r := range resp.Rows {
		app := r.Project + "/" + r.App
		if out[app] == nil {
			out[app] = map[usage.Meter]int64{}
		}
		if !r.Quantity.Big().IsInt64() {
			return nil, fmt.Errorf("%s, %s: %s is beyond int64", app, r.Meter, r.Quantity)
		}
		out[app][r.Meter] = r.Quantity.Big().Int64()
	}
	return out, nil
}

// logs returns every line of app from..to, oldest first, page by page.
func (a api) logs(ctx context.Context, app string, from, to time.Time) ([]collector.LogLine, error) {
	var lines []collector.LogLine
	cursor := ""
	for {
		q := url.Values{"app": {app}, "from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)},
			"direction": {"forward"}, "limit": {"5000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page collector.LogsResponse
		if err := a.get(ctx, "/logs", q, &page); err != nil {
			return nil, err
		}
		lines = append(lines, page.Lines...)
		if page.Next == "" {
			return lines, nil
		}
		cursor = page.Next
	}
}

// sla returns the institution's SLA report of the month (YYYY-MM).
func (a api) sla(ctx context.Context, month string) (*slahttp.SLAResponse, error) {
	var resp slahttp.SLAResponse
	if err := a.get(ctx, "/sla", url.Values{"month": {month}}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
