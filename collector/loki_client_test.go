package collector_test

// The real Loki client pushes into a real collector here. loki-client-go is a
// test-only dependency, kept to this file: it pulls in hundreds of modules,
// registers its promtail_* metrics on the default registry in init() (once per
// process, so building several clients is safe; the collector uses its own
// registry) and logs to stdout unless given a logger, as it is below.

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kitlog "github.com/go-kit/log"
	"github.com/grafana/loki-client-go/loki"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/paasmeter/paasmeter/logs"
)

// lokiClient returns a loki-client-go client that pushes to e as tenant org
// with token, JSON-encoded when asked, and what it logged.
func lokiClient(t *testing.T, e *env, token, org string, encodeJSON bool) (*loki.Client, func() string) {
	t.Helper()
	cfg, err := loki.NewDefaultConfig(e.api.URL + "/loki/api/v1/push")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TenantID = org
	cfg.EncodeJson = encodeJSON
	cfg.BatchWait = 50 * time.Millisecond
	cfg.BackoffConfig.MaxRetries = 1 // a refused push is dropped at once: the test wants to see that
	cfg.Client.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(token)}
	var mu sync.Mutex
	var logged strings.Builder
	logger := kitlog.LoggerFunc(func(kv ...any) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(&logged, kv...)
		return nil
	})
	c, err := loki.NewWithLogger(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return c, func() string {
		mu.Lock()
		defer mu.Unlock()
		return logged.String()
	}
}

func TestTheRealLokiClientShipsLinesThatBothReadAPIsGiveBack(t *testing.T) {
	for _, encoding := range []string{"protobuf", "json"} {
		t.Run(encoding, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			client, logged := lokiClient(t, e, caamiToken, "caami", encoding == "json")
			type sent struct {
				labels model.LabelSet
				at     time.Time
				line   string
			}
			base := now.Add(-5 * time.Minute).Add(123456789 * time.Nanosecond)
			var lines []sent
			for i := range 30 {
				app := []string{"pricing", "records"}[i%2]
				lines = append(lines, sent{
					labels: model.LabelSet{"app": model.LabelValue(app), "env": "prod", "container": model.LabelValue(fmt.Sprintf("%s-1", app))},
					// Pairs of lines share a nanosecond.
					at:   base.Add(time.Duration(i/2) * time.Millisecond),
					line: fmt.Sprintf("line %02d of %s: é ✓", i, app),
				})
			}
			for _, l := range lines {
				if err := client.Handle(l.labels, l.at, l.line); err != nil {
					t.Fatal(err)
				}
			}
			client.Stop() // sends what is batched, and returns once it has
			if strings.Contains(logged(), "error") {
				t.Fatalf("the client reported errors:\n%s", logged())
			}
			// want is each line as "labels time text", oldest first.
			var want []string
			for _, l := range lines {
				labels := map[string]string{}
				for k, v := range l.labels {
					labels[string(k)] = string(v)
				}
				want = append(want, fmt.Sprintf("%s %s %s", logs.StreamKey(labels), l.at.UTC().Format(time.RFC3339Nano), l.line))
			}
			slices.Sort(want)

			// The collector's own API.
			resp := e.readLogs(t, caamiToken, "caami", "direction=forward&limit=1000")
			var got []string
			for _, l := range resp.Lines {
				got = append(got, fmt.Sprintf("%s %s %s", logs.StreamKey(l.Labels), l.Time.UTC().Format(time.RFC3339Nano), l.Line))
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("GET /api/v1/tenants/caami/logs gives\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			// Loki's API, as Grafana asks it.
			a := e.lokiGet(t, caamiToken, "caami", "/loki/api/v1/query_range",
				url.Values{"query": {`{env="prod"}`}, "start": {ns(now.Add(-time.Hour))}, "end": {ns(now)}, "limit": {"1000"}})
			var q lokiQuery
			a.decode(t, &q)
			got = nil
			for _, r := range q.Data.Result {
				for _, v := range r.Values {
					at, err := parseNs(v[0])
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, fmt.Sprintf("%s %s %s", logs.StreamKey(r.Stream), at.Format(time.RFC3339Nano), v[1]))
				}
			}
			slices.Sort(got)
			if a.code != 200 || !slices.Equal(got, want) {
				t.Errorf("query_range gives %d\n%s\nwant\n%s", a.code, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestTheRealLokiClientIsRefusedWhenItClaimsAnotherTenant(t *testing.T) {
	e := newEnv(t, nil, nil)
	client, logged := lokiClient(t, e, caamiToken, "ona", false)
	if err := client.Handle(model.LabelSet{"app": "pricing"}, now.Add(-time.Minute), "caami pretending to be ona"); err != nil {
		t.Fatal(err)
	}
	client.Stop()
	if !strings.Contains(logged(), "403") {
		t.Errorf("the client did not see a 403; it logged:\n%s", logged())
	}
	for _, tenant := range []string{"caami", "ona"} {
		if n := len(e.storedLines(t, tenant)); n != 0 {
			t.Errorf("%s has %d lines from a spoofed push", tenant, n)
		}
	}
}

func parseNs(s string) (time.Time, error) {
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n).UTC(), nil
}
