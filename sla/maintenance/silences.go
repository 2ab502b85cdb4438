package maintenance

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/sla"
)

// Silences in Alertmanager for the declared maintenance windows (DESIGN.md
// §8). The SLO alerts need none (their rules leave out the apps in a
// window), but the operational ones do: a node rebooted for planned work
// should not page anyone.
//
// One silence per occurrence, found again by its comment, which starts with
// CommentPrefix and the occurrence's ID: Alertmanager keeps no other field
// of ours, and the comment is what an operator reads in its UI anyway.

// CommentPrefix starts the comment of every silence SyncSilences manages;
// the occurrence's ID and ": " follow, then the window's reason. Silences
// without it are never touched.
const CommentPrefix = "paasmeter maintenance "

// PlatformMatcher is what a platform-wide window's silence matches: every
// alert with a severity of page or ticket. Every alert of the platform's
// rules has one of the two (deploy/prometheus/rules_test.go checks it), so
// this is all of them; an alert from elsewhere that does not follow the
// convention, such as a dead man's switch, keeps flowing. Alertmanager
// refuses a silence whose matchers all match the empty label, so "match
// everything" needs a label every alert has.
var PlatformMatcher = Matcher{Name: "severity", Value: "page|ticket", IsRegex: true, IsEqual: true}

// Matcher is one matcher of a silence, as Alertmanager's API v2 has it.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	// IsEqual is false for a negative matcher (!= or !~).
	IsEqual bool `json:"isEqual"`
}

func (m Matcher) String() string {
	op := "="
	switch {
	case m.IsEqual && m.IsRegex:
		op = "=~"
	case !m.IsEqual && m.IsRegex:
		op = "!~"
	case !m.IsEqual:
		op = "!="
	}
	return fmt.Sprintf("%s%s%q", m.Name, op, m.Value)
}

// The states of a silence.
const (
	SilenceActive  = "active"
	SilencePending = "pending"
	SilenceExpired = "expired"
)

// Silence is an Alertmanager silence. State is Alertmanager's, set only on
// the silences it lists.
type Silence struct {
	ID        string
	Matchers  []Matcher
	StartsAt  time.Time
	EndsAt    time.Time
	CreatedBy string
	Comment   string
	State     string
}

// Silencer is what SyncSilences needs of Alertmanager: an
// *AlertmanagerClient is one.
type Silencer interface {
	// ListSilences returns every silence, expired ones included.
	ListSilences(ctx context.Context) ([]Silence, error)
	// PostSilence creates s (no ID) or updates the silence s.ID, and
	// returns the silence's ID: Alertmanager replaces a silence it cannot
	// update in place (an active one whose start or matchers change) by a
	// new one, with a new ID.
	PostSilence(ctx context.Context, s Silence) (string, error)
	// ExpireSilence ends the silence id now.
	ExpireSilence(ctx context.Context, id string) error
}

// The actions of a silence sync (SilenceChange.Action).
const (
	SyncCreate    = "create"
	SyncUpdate    = "update"
	SyncExpire    = "expire"
	SyncUnchanged = "unchanged"
)

// SilenceChange is what a sync does, or would do, for one occurrence or one
// stale silence.
type SilenceChange struct {
	// Action is SyncCreate, SyncUpdate, SyncExpire or SyncUnchanged.
	Action string
	// Occurrence is the ID of the window's occurrence (sla.Window.ID), as
	// the silence's comment names it.
	Occurrence string
	// Silence is the silence as the window wants it (as found, for
	// SyncExpire and SyncUnchanged). Its ID is the existing silence's,
	// or after a create, or an update that Alertmanager made a replacement,
	// the new one's.
	Silence Silence
	// PreviousID is, for SyncUpdate, the ID of the silence updated.
	PreviousID string
	// Err is why the change failed, when applied.
	Err error
}

// SyncResult is the changes of one sync, ordered by occurrence, then action.
type SyncResult struct {
	Changes []SilenceChange
}

// Count returns the number of changes with action.
func (r SyncResult) Count(action string) int {
	n := 0
	for _, c := range r.Changes {
		if c.Action == action {
			n++
		}
	}
	return n
}

// SyncSilences makes Alertmanager's silences match windows at now: each
// occurrence that has not ended gets one silence, created by createdBy,
// over the occurrence's time with its scope's matchers (SilenceMatchers);
// a silence of ours that no longer matches its occurrence is updated, and
// one whose occurrence is no longer among windows — cancelled, moved away,
// ended early, beyond the caller's horizon — is expired. Running it again
// changes nothing: it is what cron runs every few minutes.
//
// windows are the occurrences to silence, typically Service.Windows of
// every tenant over [now, now+horizon). A change that fails does not stop
// the others: the error joins them all, and the result says which failed.
func SyncSilences(ctx context.Context, am Silencer, windows []sla.Window, now time.Time, createdBy string) (SyncResult, error) {
	plan, err := PlanSilences(ctx, am, windows, now, createdBy)
	if err != nil {
		return plan, err
	}
	return ApplySilences(ctx, am, plan)
}

// PlanSilences returns what SyncSilences would do, reading Alertmanager's
// silences but changing none: a dry run.
func PlanSilences(ctx context.Context, am Silencer, windows []sla.Window, now time.Time, createdBy string) (SyncResult, error) {
	existing, err := am.ListSilences(ctx)
	if err != nil {
		return SyncResult{}, fmt.Errorf("maintenance silences: %w", err)
	}
	return SyncResult{Changes: planSilences(windows, existing, now, createdBy)}, nil
}

// ApplySilences makes the changes of plan (from PlanSilences): creations
// and updates first, then expirations, so that a window never goes
// unsilenced between the two. It returns plan with the new silences' IDs
// and each failure's error.
func ApplySilences(ctx context.Context, am Silencer, plan SyncResult) (SyncResult, error) {
	out := SyncResult{Changes: slices.Clone(plan.Changes)}
	var errs []error
	for _, pass := range []string{SyncCreate, SyncUpdate, SyncExpire} {
		for i := range out.Changes {
			c := &out.Changes[i]
			if c.Action != pass {
				continue
			}
			if err := ctx.Err(); err != nil {
				return out, errors.Join(append(errs, fmt.Errorf("maintenance silences: %w", err))...)
			}
			switch c.Action {
			case SyncCreate, SyncUpdate:
				id, err := am.PostSilence(ctx, c.Silence)
				if err != nil {
					c.Err = fmt.Errorf("%s the silence of maintenance window %s: %w", c.Action, c.Occurrence, err)
					break
				}
				c.Silence.ID = id
			case SyncExpire:
				if err := am.ExpireSilence(ctx, c.Silence.ID); err != nil {
					c.Err = fmt.Errorf("expire silence %s of maintenance window %s: %w", c.Silence.ID, c.Occurrence, err)
				}
			}
			if c.Err != nil {
				errs = append(errs, c.Err)
			}
		}
	}
	return out, errors.Join(errs...)
}

// planSilences compares the silences windows want at now with existing.
func planSilences(windows []sla.Window, existing []Silence, now time.Time, createdBy string) []SilenceChange {
	// Ours that still silence something, by occurrence.
	ours := map[string][]Silence{}
	for _, s := range existing {
		if s.State == SilenceExpired || !s.EndsAt.After(now) {
			continue
		}
		if occ, ok := OccurrenceOf(s.Comment); ok {
			ours[occ] = append(ours[occ], s)
		}
	}
	var out []SilenceChange
	wanted := map[string]bool{}
	for _, w := range windows {
		if !w.End.After(now) || wanted[w.ID] {
			continue // ended: nothing left to silence
		}
		wanted[w.ID] = true
		want := Silence{Matchers: SilenceMatchers(w.Scope), StartsAt: w.Start, EndsAt: w.End, CreatedBy: createdBy,
			Comment: CommentPrefix + w.ID + ": " + w.Reason}
		found := ours[w.ID]
		if len(found) == 0 {
			out = append(out, SilenceChange{Action: SyncCreate, Occurrence: w.ID, Silence: want})
			continue
		}
		// Keep the one already right, else the first; the others are
		// duplicates (two syncs that raced) and expire.
		keep := 0
		for i, s := range found {
			if upToDate(s, want, now) {
				keep = i
				break
			}
		}
		s := found[keep]
		if upToDate(s, want, now) {
			out = append(out, SilenceChange{Action: SyncUnchanged, Occurrence: w.ID, Silence: s})
		} else {
			want.ID = s.ID
			if started(s, now) && !w.Start.After(now) {
				// Alertmanager updates an active silence in place only if
				// its start stays: the window's start has passed anyway.
				want.StartsAt = s.StartsAt
			}
			out = append(out, SilenceChange{Action: SyncUpdate, Occurrence: w.ID, Silence: want, PreviousID: s.ID})
		}
		for i, d := range found {
			if i != keep {
				out = append(out, SilenceChange{Action: SyncExpire, Occurrence: w.ID, Silence: d})
			}
		}
	}
	for occ, ss := range ours {
		if wanted[occ] {
			continue
		}
		for _, s := range ss {
			out = append(out, SilenceChange{Action: SyncExpire, Occurrence: occ, Silence: s})
		}
	}
	slices.SortStableFunc(out, func(a, b SilenceChange) int {
		return cmp.Or(cmp.Compare(a.Occurrence, b.Occurrence), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Silence.ID, b.Silence.ID))
	})
	return out
}

// started reports whether s has started at now.
func started(s Silence, now time.Time) bool { return !s.StartsAt.After(now) }

// upToDate reports whether the existing silence s is the silence want, at
// now. A start that has passed on both sides is the same start: Alertmanager
// moves the start of a silence created late to its creation, and the past
// is silenced or not already.
func upToDate(s, want Silence, now time.Time) bool {
	sameStart := sameInstant(s.StartsAt, want.StartsAt) || (started(s, now) && started(want, now))
	return sameStart && sameInstant(s.EndsAt, want.EndsAt) && s.Comment == want.Comment && sameMatchers(s.Matchers, want.Matchers)
}

// sameInstant compares times to the millisecond, Alertmanager's precision
// in its API.
func sameInstant(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func sameMatchers(a, b []Matcher) bool {
	byName := func(x, y Matcher) int {
		return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Value, y.Value))
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, byName)
	slices.SortFunc(b, byName)
	return slices.Equal(a, b)
}

// SilenceMatchers returns the matchers of a window of scope: equality on
// each of tenant, project and app it gives (the labels of every alert about
// an institution or an app, docs/runbooks/README.md), or PlatformMatcher for
// a platform-wide window.
func SilenceMatchers(scope sla.Scope) []Matcher {
	var ms []Matcher
	for _, l := range []struct{ name, value string }{{"tenant", scope.Tenant}, {"project", scope.Project}, {"app", scope.App}} {
		if l.value != "" {
			ms = append(ms, Matcher{Name: l.name, Value: l.value, IsEqual: true})
		}
	}
	if len(ms) == 0 {
		ms = []Matcher{PlatformMatcher}
	}
	return ms
}

// OccurrenceOf returns the occurrence ID a silence's comment names, if it is
// one of ours: CommentPrefix, the ID, then ":". IDs have no ':' or space.
func OccurrenceOf(comment string) (string, bool) {
	rest, ok := strings.CutPrefix(comment, CommentPrefix)
	if !ok {
		return "", false
	}
	occ, _, ok := strings.Cut(rest, ":")
	if !ok || occ == "" || strings.ContainsAny(occ, " \t\n") {
		return "", false
	}
	return occ, true
}

// AlertmanagerClient calls Alertmanager's API v2 for silences.
type AlertmanagerClient struct {
	// BaseURL is Alertmanager's external URL, with its route prefix if it
	// has one: http://127.0.0.1:9093.
	BaseURL string
	// HTTP defaults to a client with a 30 s timeout.
	HTTP *http.Client
}

var _ Silencer = (*AlertmanagerClient)(nil)

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// maxResponse bounds what is read of an answer: the silences of a busy
// Alertmanager, retention included, are far below it.
const maxResponse = 64 << 20

// apiSilence is a silence as API v2 encodes it.
type apiSilence struct {
	ID        string       `json:"id,omitempty"`
	Matchers  []apiMatcher `json:"matchers"`
	StartsAt  time.Time    `json:"startsAt"`
	EndsAt    time.Time    `json:"endsAt"`
	CreatedBy string       `json:"createdBy"`
	Comment   string       `json:"comment"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status,omitempty"`
}

// apiMatcher is a matcher as API v2 encodes it. Alertmanager before 0.22
// has no isEqual: absent means equal.
type apiMatcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual *bool  `json:"isEqual,omitempty"`
}

// ListSilences implements Silencer: GET /api/v2/silences.
func (c *AlertmanagerClient) ListSilences(ctx context.Context) ([]Silence, error) {
	var in []apiSilence
	if err := c.do(ctx, http.MethodGet, "/api/v2/silences", nil, &in); err != nil {
		return nil, err
	}
	out := make([]Silence, 0, len(in))
	for _, s := range in {
		o := Silence{ID: s.ID, StartsAt: s.StartsAt, EndsAt: s.EndsAt, CreatedBy: s.CreatedBy, Comment: s.Comment}
		if s.Status != nil {
			o.State = s.Status.State
		}
		for _, m := range s.Matchers {
			o.Matchers = append(o.Matchers, Matcher{Name: m.Name, Value: m.Value, IsRegex: m.IsRegex, IsEqual: m.IsEqual == nil || *m.IsEqual})
		}
		out = append(out, o)
	}
	return out, nil
}

// PostSilence implements Silencer: POST /api/v2/silences.
func (c *AlertmanagerClient) PostSilence(ctx context.Context, s Silence) (string, error) {
	body := apiSilence{ID: s.ID, StartsAt: s.StartsAt.UTC(), EndsAt: s.EndsAt.UTC(), CreatedBy: s.CreatedBy, Comment: s.Comment,
		Matchers: make([]apiMatcher, 0, len(s.Matchers))}
	for _, m := range s.Matchers {
		body.Matchers = append(body.Matchers, apiMatcher{Name: m.Name, Value: m.Value, IsRegex: m.IsRegex, IsEqual: &m.IsEqual})
	}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v2/silences", body, &out); err != nil {
		return "", err
	}
	if out.SilenceID == "" {
		return "", fmt.Errorf("alertmanager: POST %s: no silenceID in the answer", c.url("/api/v2/silences"))
	}
	return out.SilenceID, nil
}

// ExpireSilence implements Silencer: DELETE /api/v2/silence/{id}.
func (c *AlertmanagerClient) ExpireSilence(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/silence/"+url.PathEscape(id), nil, nil)
}

func (c *AlertmanagerClient) url(path string) string { return strings.TrimRight(c.BaseURL, "/") + path }

// do sends body as JSON, if not nil, and decodes a 2xx answer into out, if
// not nil. Errors name the method, the URL and, for an answer, its status
// and the start of its body (Alertmanager says there what it refused).
func (c *AlertmanagerClient) do(ctx context.Context, method, path string, body, out any) error {
	u := c.url(path)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("alertmanager: %s %s: %w", method, u, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("alertmanager: %s %s: %w", method, u, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("alertmanager: %w", err) // *url.Error names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("alertmanager: %s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) // lets the connection be reused
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(out); err != nil {
		return fmt.Errorf("alertmanager: %s %s: decoding the answer: %w", method, u, err)
	}
	return nil
}
