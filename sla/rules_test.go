package sla_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/internal/ruletext"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/credit"
)

// The rules of Classify are data: testdata/minutes/*.txt hold cases, each
// one app's events and maintenance windows and the minutes they must give,
// so a rule reads as the sentence that names it and its timeline, and adding
// one is adding a paragraph. A file is lines of words; # starts a comment
// line. Times are 12:00 or 12:00:30 on the current day, or 2026-02-28 23:50.
// The lines before the first case set what every case of the file starts
// with; a case may change them for itself.
//
//	day 2026-03-10                the day times of day are on
//	period from 11:00 to 14:00    the minutes classified, [from, to)
//	period 2026-03                or a calendar month in Europe/Brussels
//	now 23:00                     when the report is made
//
//	case <a sentence: the rule>   starts a case
//	window from 12:00 to 13:00 <reason>
//	                              a maintenance window that applies to the app
//	replica pricing-0 c0 from 10:00 to 14:05 probed every 10s
//	                              a replica of claims/pricing running container
//	                              c0 from 10:00, probed from 10:00:10 while
//	                              before 14:05, every probe passing unless
//	  fail from 12:30 to 12:30:35     the probes in [from, to) fail, or
//	  silent from 12:00 to 14:05      there are none (its node is down);
//	                                  a later line wins over an earlier one
//	12:05 died pricing-0 c0 [by owner|by platform] [oom-killed]
//	                              a lifecycle event (started, died, stopped,
//	                              removed, oom); a died event not by its owner
//	                              has exit code 137
//	want up 170 down-platform 0 down-tenant 10 maintenance 0 not-eligible 0 future 0 total 180
//	                              the minutes: an omitted count is 0, total is
//	                              checked when given
//	availability 91.6667          optional: the app's availability in percent,
//	credit 10                     and the credit it earns under the default tiers
//	outage from 11:10 to 11:20 tenant 10
//	                              optional: when given, the outages are these
//
// Events are passed to Classify in the order of their lines. Every case is
// also checked for what holds of any classification: the minutes add up,
// Total is the period's minutes, the outages list every down minute, and the
// app is claims/pricing when it has an event.

// minutesCase is one case of a rule file.
type minutesCase struct {
	name string
	// pos is the file:line of its case line.
	pos           string
	from, to, now time.Time
	parts         []eventPart
	windows       []sla.Window
	// want are the counts of its want line, wantPos that line's file:line
	// ("" before it is read), and total the total it states (0 when it does
	// not).
	want    counts
	wantPos string
	total   int64
	// availability and credit are "" when the case does not state them;
	// outages nil.
	availability, credit string
	outages              []sla.Outage
}

// eventPart is a run of a case's events: a probed replica, whose fail and
// silent lines may follow it, or one lifecycle event.
type eventPart struct {
	name, ctr  string
	start, end time.Time
	every      time.Duration
	rules      []any // during's arguments
	event      *events.Event
}

func (p *eventPart) events() []events.Event {
	if p.event != nil {
		return []events.Event{*p.event}
	}
	return replica(p.name, p.ctr, p.start, p.end, p.every, during(p.rules...))
}

func (c *minutesCase) events() []events.Event {
	var out []events.Event
	for i := range c.parts {
		out = append(out, c.parts[i].events()...)
	}
	return out
}

// ruleLine is one line's words being read.
type ruleLine struct {
	ruletext.Line
	loc *time.Location
	day string
}

var (
	dateWord  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	monthWord = regexp.MustCompile(`^\d{4}-\d{2}$`)
	clockWord = regexp.MustCompile(`^\d{2}:\d{2}(:\d{2})?$`)
)

// time takes a time of day on the current day, or a date and a time of day.
func (l *ruleLine) time(what string) (time.Time, error) {
	w, err := l.Word(what)
	if err != nil {
		return time.Time{}, err
	}
	day := l.day
	if dateWord.MatchString(w) {
		day = w
		if w, err = l.Word(what + "'s time of day"); err != nil {
			return time.Time{}, err
		}
	}
	if !clockWord.MatchString(w) {
		return time.Time{}, l.Errorf("%s: %q is not a time like 12:00, 12:00:30 or 2026-02-28 23:50", what, w)
	}
	if day == "" {
		return time.Time{}, l.Errorf("%s: %s is a time of day, and no day line came before it", what, w)
	}
	if len(w) == len("12:00") {
		w += ":00"
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", day+" "+w, l.loc)
	if err != nil {
		return time.Time{}, l.Errorf("%s: %v", what, err)
	}
	return t, nil
}

// span takes "from T to T".
func (l *ruleLine) span(what string) (from, to time.Time, err error) {
	if err = l.Keyword("from"); err != nil {
		return
	}
	if from, err = l.time(what + " start"); err != nil {
		return
	}
	if err = l.Keyword("to"); err != nil {
		return
	}
	if to, err = l.time(what + " end"); err != nil {
		return
	}
	if !to.After(from) {
		err = l.Errorf("%s ends at %s, not after it starts at %s", what, to.Format(time.DateTime), from.Format(time.DateTime))
	}
	return
}

func (l *ruleLine) count(key string) (int64, error) {
	w, err := l.Word(key + "'s count")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(w, 10, 64)
	if err != nil || n < 0 {
		return 0, l.Errorf("%s: %q is not a count of minutes", key, w)
	}
	return n, nil
}

// parseMinutesCases reads the cases of a rule file; name is how errors
// name the file.
func parseMinutesCases(name string, r io.Reader, loc *time.Location) ([]*minutesCase, error) {
	var (
		cases []*minutesCase
		// header is what every case starts with, and headerDay the day its
		// times of day are on.
		header         minutesCase
		headerDay, day string
		c              = &header
	)
	err := ruletext.Read(name, r, func(rl *ruletext.Line) error {
		l := &ruleLine{Line: *rl, loc: loc, day: day}
		verb, _ := l.Word("")
		var err error
		switch {
		case verb == "case":
			if c != &header {
				if err := finish(c); err != nil {
					return err
				}
			}
			if len(l.Words) == 0 {
				return l.Errorf("a case needs a sentence naming its rule")
			}
			cc := header
			c = &cc
			cases = append(cases, c)
			c.name, c.pos, l.Words = strings.Join(l.Words, " "), l.Pos, nil
			day = headerDay
		case verb == "day":
			var w string
			if w, err = l.Word("date"); err == nil && !dateWord.MatchString(w) {
				err = l.Errorf("%q is not a date like 2026-03-10", w)
			}
			day = w
			if c == &header {
				headerDay = w
			}
		case verb == "period" && len(l.Words) == 1 && monthWord.MatchString(l.Words[0]):
			var p calendar.Month
			if p, err = calendar.Parse(l.Words[0], loc); err != nil {
				err = l.Errorf("%v", err)
			}
			c.from, c.to, l.Words = p.Start(), p.End(), nil
		case verb == "period":
			c.from, c.to, err = l.span("period")
		case verb == "now":
			c.now, err = l.time("now")
		case c == &header:
			err = l.Errorf("%q before the first case: only day, period and now set what every case starts with", verb)
		case verb == "window":
			var w sla.Window
			if w.Start, w.End, err = l.span("window"); err == nil {
				w.ID, w.Scope, w.Reason, l.Words = fmt.Sprintf("w%d", len(c.windows)+1), sla.Scope{Tenant: "caami"}, strings.Join(l.Words, " "), nil
				c.windows = append(c.windows, w)
			}
		case verb == "replica":
			err = replicaLine(l, c)
		case verb == "fail" || verb == "silent":
			err = outcomeLine(l, c, verb)
		case clockWord.MatchString(verb) || dateWord.MatchString(verb):
			l.Words = append([]string{verb}, l.Words...)
			err = eventLine(l, c)
		case verb == "want":
			err = wantLine(l, c)
		case verb == "availability" || verb == "credit":
			var w string
			if w, err = l.Word(verb + " in percent"); err == nil {
				if _, perr := strconv.ParseFloat(w, 64); perr != nil {
					err = l.Errorf("%s: %q is not a percentage", verb, w)
				}
			}
			if verb == "availability" {
				c.availability = w
			} else {
				c.credit = w
			}
		case verb == "outage":
			err = outageLine(l, c)
		default:
			err = l.Errorf("unknown line %q: want case, day, period, now, window, replica, fail, silent, an event (12:05 died ...), want, availability, credit or outage", verb)
		}
		if err == nil {
			err = l.End()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%s: no case", name)
	}
	return cases, finish(c)
}

// finish checks that a case says what it classifies and what it expects.
func finish(c *minutesCase) error {
	switch {
	case c.from.IsZero():
		return fmt.Errorf("%s: case %q has no period", c.pos, c.name)
	case c.now.IsZero():
		return fmt.Errorf("%s: case %q has no now", c.pos, c.name)
	case c.wantPos == "":
		return fmt.Errorf("%s: case %q has no want line", c.pos, c.name)
	}
	return nil
}

func replicaLine(l *ruleLine, c *minutesCase) error {
	p := eventPart{}
	var err error
	if p.name, err = l.Word("replica name"); err != nil {
		return err
	}
	if p.ctr, err = l.Word("container"); err != nil {
		return err
	}
	if p.start, p.end, err = l.span("replica"); err != nil {
		return err
	}
	for _, k := range []string{"probed", "every"} {
		if err := l.Keyword(k); err != nil {
			return err
		}
	}
	w, err := l.Word("probe interval")
	if err != nil {
		return err
	}
	if p.every, err = time.ParseDuration(w); err != nil || p.every <= 0 {
		return l.Errorf("probe interval %q is not a duration like 10s", w)
	}
	c.parts = append(c.parts, p)
	return nil
}

func outcomeLine(l *ruleLine, c *minutesCase, verb string) error {
	if len(c.parts) == 0 || c.parts[len(c.parts)-1].event != nil {
		return l.Errorf("%s must follow a replica line: it says how that replica's probes go", verb)
	}
	from, to, err := l.span("probes")
	if err != nil {
		return err
	}
	o := fail
	if verb == "silent" {
		o = silent
	}
	p := &c.parts[len(c.parts)-1]
	p.rules = append(p.rules, from, to, o)
	return nil
}

// lifecycleTypes are the event types an event line may name.
var lifecycleTypes = []events.Type{events.Started, events.Died, events.Stopped, events.Removed, events.OOM}

func eventLine(l *ruleLine, c *minutesCase) error {
	at, err := l.time("event time")
	if err != nil {
		return err
	}
	w, err := l.Word("event type")
	if err != nil {
		return err
	}
	typ := events.Type(w)
	if !slices.Contains(lifecycleTypes, typ) {
		return l.Errorf("event type %q: want one of %v", w, lifecycleTypes)
	}
	name, err := l.Word("replica name")
	if err != nil {
		return err
	}
	ctr, err := l.Word("container")
	if err != nil {
		return err
	}
	var by events.Initiator
	if len(l.Words) > 0 && l.Words[0] == "by" {
		l.Words = l.Words[1:]
		w, err := l.Word("initiator")
		if err != nil {
			return err
		}
		if by = events.Initiator(w); by != events.ByOwner && by != events.ByPlatform {
			return l.Errorf("initiator %q: want owner or platform", w)
		}
	}
	e := lifecycle(typ, name, ctr, at, by)
	if len(l.Words) > 0 && l.Words[0] == "oom-killed" {
		if typ != events.Died {
			return l.Errorf("oom-killed is said of a died event, not %s", typ)
		}
		l.Words = l.Words[1:]
		e.OOMKilled = true
		e.SetID()
	}
	c.parts = append(c.parts, eventPart{event: &e})
	return nil
}

func wantLine(l *ruleLine, c *minutesCase) error {
	if c.wantPos != "" {
		return l.Errorf("a second want line: the case's is at %s", c.wantPos)
	}
	c.wantPos = l.Pos
	fields := map[string]*int64{
		"up": &c.want.Up, "down-platform": &c.want.DownPlatform, "down-tenant": &c.want.DownTenant,
		"maintenance": &c.want.Maintenance, "not-eligible": &c.want.NotEligible, "future": &c.want.Future,
		"total": &c.total,
	}
	seen := map[string]bool{}
	for len(l.Words) > 0 {
		key, _ := l.Word("")
		f, ok := fields[key]
		if !ok {
			return l.Errorf("want %q: the counts are up, down-platform, down-tenant, maintenance, not-eligible, future and total", key)
		}
		if seen[key] {
			return l.Errorf("want %s twice", key)
		}
		seen[key] = true
		n, err := l.count(key)
		if err != nil {
			return err
		}
		*f = n
	}
	if len(seen) == 0 {
		return l.Errorf("want names no count")
	}
	return nil
}

func outageLine(l *ruleLine, c *minutesCase) error {
	var o sla.Outage
	var err error
	if o.Start, o.End, err = l.span("outage"); err != nil {
		return err
	}
	w, err := l.Word("outage cause")
	if err != nil {
		return err
	}
	if o.Cause = sla.Cause(w); o.Cause != sla.CausePlatform && o.Cause != sla.CauseTenant {
		return l.Errorf("outage cause %q: want platform or tenant", w)
	}
	if o.Minutes, err = l.count("outage"); err != nil {
		return err
	}
	c.outages = append(c.outages, o)
	return nil
}

// TestClassify runs every case of testdata/minutes.
func TestClassify(t *testing.T) {
	loc := clocktest.Brussels(t)
	cfg := config(t)
	files, err := filepath.Glob(filepath.Join("testdata", "minutes", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in testdata/minutes (%v)", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cases, err := parseMinutesCases(path, f, loc)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { checkMinutes(t, c, cfg) })
			}
		})
	}
}

func checkMinutes(t *testing.T, c *minutesCase, cfg sla.Config) {
	evs := c.events()
	got := sla.Classify(evs, c.windows, c.from, c.to, c.now, cfg)
	if g := countsOf(&got); g != c.want {
		t.Errorf("%s: got %+v, want %+v", c.wantPos, g, c.want)
	}
	if minutes := int64(c.to.Sub(c.from) / time.Minute); got.Total != minutes || (c.total != 0 && got.Total != c.total) {
		t.Errorf("%s: %d minutes in all, want the period's %d (and the case's total %d if it gives one)", c.pos, got.Total, minutes, c.total)
	}
	if got.Eligible != got.Up+got.DownPlatform+got.DownTenant || got.Total != got.Eligible+got.Maintenance+got.NotEligible+got.Future {
		t.Errorf("%s: minutes do not add up: %+v of %d, %d eligible", c.pos, countsOf(&got), got.Total, got.Eligible)
	}
	if len(evs) > 0 && (got.Project != "claims" || got.App != "pricing") {
		t.Errorf("%s: app %s/%s, want claims/pricing", c.pos, got.Project, got.App)
	}
	var out int64
	for _, o := range got.Outages {
		out += o.Minutes
		if o.End.Sub(o.Start) != time.Duration(o.Minutes)*time.Minute {
			t.Errorf("%s: outage %+v: its span is not its minutes", c.pos, o)
		}
	}
	if out != got.DownPlatform+got.DownTenant {
		t.Errorf("%s: outages list %d minutes, %d were down", c.pos, out, got.DownPlatform+got.DownTenant)
	}
	if c.outages != nil {
		if len(got.Outages) != len(c.outages) {
			t.Errorf("%s: outages %+v, want %+v", c.pos, got.Outages, c.outages)
		} else {
			for i, w := range c.outages {
				if g := got.Outages[i]; !g.Start.Equal(w.Start) || !g.End.Equal(w.End) || g.Cause != w.Cause || g.Minutes != w.Minutes {
					t.Errorf("%s: outage %d = %+v, want %+v", c.pos, i, g, w)
				}
			}
		}
	}
	if c.availability != "" && got.Availability.String() != c.availability {
		t.Errorf("%s: availability %s, want %s", c.pos, got.Availability, c.availability)
	}
	if credit := credit.Percent(cfg.CreditTiers, got.Availability); c.credit != "" && credit.String() != c.credit {
		t.Errorf("%s: credit %s %% at %s %% availability, want %s %%", c.pos, credit, got.Availability, c.credit)
	}
}

// TestRuleFileErrorsNameTheLine feeds the parser broken files: each error
// names the file and line a person must fix.
func TestRuleFileErrorsNameTheLine(t *testing.T) {
	head := "day 2026-03-10\nperiod from 11:00 to 14:00\nnow 23:00\n\n"
	tests := []struct {
		name, text, says string
	}{
		{"an unknown line", head + "case a rule\nreplcia pricing-0 c0 from 10:00 to 14:00 probed every 10s\n", `rules.txt:6: unknown line "replcia"`},
		{"a malformed time", head + "case a rule\nreplica pricing-0 c0 from 10h00 to 14:00 probed every 10s\n", `rules.txt:6: replica start: "10h00" is not a time`},
		{"a span ending before it starts", head + "case a rule\nwindow from 13:00 to 12:00\n", "rules.txt:6: window ends at 2026-03-10 12:00:00, not after it starts"},
		{"fail without a replica", head + "case a rule\n12:00 started pricing-0 c0\n  fail from 12:00 to 12:10\n", "rules.txt:7: fail must follow a replica line"},
		{"an unknown count", head + "case a rule\nwant up 170 down 10\n", `rules.txt:6: want "down": the counts are`},
		{"a count given twice", head + "case a rule\nwant up 170 up 10\n", "rules.txt:6: want up twice"},
		{"two want lines", head + "case a rule\nwant up 180\nwant up 180\n", "rules.txt:7: a second want line: the case's is at rules.txt:6"},
		{"words left over", head + "case a rule\n12:05 died pricing-0 c0 by owner loudly\n", `rules.txt:6: unexpected "loudly"`},
		{"a case without a want line", head + "case a rule\n12:00 started pricing-0 c0\ncase another\nwant up 180\n", `rules.txt:5: case "a rule" has no want line`},
		{"a case line without a sentence", head + "case\n", "rules.txt:5: a case needs a sentence"},
		{"a replica line before the first case", "replica pricing-0 c0 from 10:00 to 14:00 probed every 10s\n", `rules.txt:1: "replica" before the first case`},
		{"a file without a case", head, "rules.txt: no case"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseMinutesCases("rules.txt", strings.NewReader(tc.text), clocktest.Brussels(t))
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %v, want one saying %q", err, tc.says)
			}
		})
	}
}
