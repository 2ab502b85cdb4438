package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
)

// logsOptions are the flags of paasmeter logs.
type logsOptions struct {
	collectorURL, tokenFile           string
	tenant, app, container, env, text string
	since, interval                   time.Duration
	limit                             int
	follow                            bool
}

func (a *app) logsCmd() *cobra.Command {
	o := logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs --tenant T [--app A] [--container C] [--env E] [--contains S] [--since 1h] [--limit N] [--follow]",
		Short: "Print an institution's container logs from the collector",
		Long: `Print an institution's container logs, read through the collector's API
(GET /api/v1/tenants/{tenant}/logs), oldest first, one line each:

  <time> {<labels>} <line>

It prints the newest --limit lines of the last --since; with --follow it then
asks every --interval for newer lines and prints each line once (lines that
reach the collector more than 30s late are not followed: read them again
without --follow).

The token comes from PAASMETER_TOKEN or --token-file: an institution token
reads its own tenant; an admin token reads any, and every such read is
written to the collector's access log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runLogs(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.tenant, "tenant", "", "tenant (institution) whose logs to read (required)")
	f.StringVar(&o.app, "app", "", "only this app")
	f.StringVar(&o.container, "container", "", "only this container")
	f.StringVar(&o.env, "env", "", "only this environment (dev, test, acc, prod)")
	f.StringVar(&o.text, "contains", "", "only lines containing this text")
	f.DurationVar(&o.since, "since", time.Hour, "how far back to start")
	f.IntVar(&o.limit, "limit", 100, fmt.Sprintf("most lines printed at start (1 to %d)", metering.MaxLogLimit))
	f.BoolVar(&o.follow, "follow", false, "keep printing new lines until interrupted")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "with --follow, how often to ask for new lines")
	defaultURL := a.getenv("PAASMETER_COLLECTOR_URL")
	if defaultURL == "" {
		defaultURL = "http://127.0.0.1:8080"
	}
	f.StringVar(&o.collectorURL, "collector", defaultURL, "the collector's API URL (PAASMETER_COLLECTOR_URL)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token (PAASMETER_TOKEN overrides it)")
	_ = cmd.MarkFlagRequired("tenant") // the flag exists: this cannot fail
	return cmd
}

// followLookback is how far before the newest printed line each --follow poll
// looks again, for lines that reach the collector late (an agent's spool
// drains in order, but another agent's lines may arrive later).
const followLookback = 30 * time.Second

func (a *app) runLogs(ctx context.Context, o logsOptions) error {
	switch {
	case o.limit < 1 || o.limit > metering.MaxLogLimit:
		return fmt.Errorf("logs: --limit %d must be from 1 to %d", o.limit, metering.MaxLogLimit)
	case o.since <= 0:
		return fmt.Errorf("logs: --since %s must be positive", o.since)
	case o.interval <= 0:
		return fmt.Errorf("logs: --interval %s must be positive", o.interval)
	}
	token := strings.TrimSpace(a.getenv("PAASMETER_TOKEN"))
	if token == "" {
		if o.tokenFile == "" {
			return errors.New("logs: no token: set PAASMETER_TOKEN or --token-file")
		}
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("logs: token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	r := &logReader{base: strings.TrimSuffix(o.collectorURL, "/"), token: token, o: o, client: &http.Client{Timeout: 30 * time.Second}}

	// The newest lines first, so --limit keeps the most recent; printed oldest first.
	page, err := r.page(ctx, a.clock.Now().Add(-o.since), "backward", o.limit, "")
	if err != nil {
		return err
	}
	slices.Reverse(page.Lines)
	seen := map[string]time.Time{}
	var newest time.Time
	for _, l := range page.Lines {
		a.printLine(l)
		seen[l.ID] = l.Time
		newest = l.Time
	}
	if !o.follow {
		return nil
	}
	if newest.IsZero() {
		newest = a.clock.Now().Add(-o.since)
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of --follow
		case <-tick.C:
		}
		from := newest.Add(-followLookback)
		cursor := ""
		for {
			page, err := r.page(ctx, from, "forward", metering.MaxLogLimit, cursor)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, l := range page.Lines {
				if _, ok := seen[l.ID]; ok {
					continue
				}
				a.printLine(l)
				seen[l.ID] = l.Time
				if l.Time.After(newest) {
					newest = l.Time
				}
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		// Lines before the next poll's window can never be read again.
		for id, t := range seen {
			if t.Before(newest.Add(-followLookback)) {
				delete(seen, id)
			}
		}
	}
}

// printLine prints one line of a tenant's logs, its controls escaped (termSafe).
func (a *app) printLine(l collector.LogLine) {
	fmt.Fprintf(a.stdout, "%s %s %s\n", l.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"), termSafe(logs.StreamKey(l.Labels)), termSafe(l.Line))
}

// logReader reads a tenant's lines through the collector's API.
type logReader struct {
	base, token string
	o           logsOptions
	client      *http.Client
}

// page asks for lines from from (to the collector's now) in direction.
func (r *logReader) page(ctx context.Context, from time.Time, direction string, limit int, cursor string) (collector.LogsResponse, error) {
	var resp collector.LogsResponse
	q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "direction": {direction}, "limit": {strconv.Itoa(limit)}}
	for name, v := range map[string]string{"app": r.o.app, "container": r.o.container, "env": r.o.env, "contains": r.o.text, "cursor": cursor} {
		if v != "" {
			q.Set(name, v)
		}
	}
	u := r.base + "/api/v1/tenants/" + url.PathEscape(r.o.tenant) + "/logs?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return resp, fmt.Errorf("logs: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	res, err := r.client.Do(req)
	if err != nil {
		return resp, fmt.Errorf("logs: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20)) // an error answer is short; a cut one still has a status
		var apiErr struct {
			Error  string          `json:"error"`
			Detail json.RawMessage `json:"detail"`
		}
		if json.Unmarshal(body, &apiErr) != nil || apiErr.Error == "" {
			return resp, fmt.Errorf("logs: the collector answered %s", res.Status)
		}
		if len(apiErr.Detail) > 0 {
			return resp, fmt.Errorf("logs: the collector answered %s: %s %s", res.Status, apiErr.Error, apiErr.Detail)
		}
		return resp, fmt.Errorf("logs: the collector answered %s: %s", res.Status, apiErr.Error)
	}
	if err := json.NewDecoder(res.Body).Decode(&resp); err != nil {
		return resp, fmt.Errorf("logs: the collector's answer: %w", err)
	}
	return resp, nil
}
