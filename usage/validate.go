package usage

import (
	"fmt"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/batch"
)

// Limits bound what a valid record or batch may contain.
type Limits struct {
	// MaxRecords is the most records one batch may hold.
	MaxRecords int
	// FutureSkew is how far past the receiver's clock a window may end.
	FutureSkew time.Duration
	// Horizon is how far in the past a window may start.
	Horizon time.Duration
	// MaxWindow is the longest window a record may cover, at most MaxWindowLimit.
	MaxWindow time.Duration
	// Earliest, when not zero, is the earliest window start accepted: with
	// a rate card, its first version's effective instant, since billing
	// could never price an earlier record and it would fail its
	// institution's invoice.
	Earliest time.Time
}

// MaxWindowLimit bounds any configured MaxWindow, so that whoever needs the
// record just before an instant (billing, for a run that began earlier) knows
// how far back to look.
const MaxWindowLimit = 24 * time.Hour

// DefaultLimits are the limits of DESIGN.md §3.
func DefaultLimits() Limits {
	return Limits{
		MaxRecords: 10000,
		FutureSkew: 5 * time.Minute,
		Horizon:    400 * 24 * time.Hour,
		MaxWindow:  time.Hour,
	}
}

// Validate reports what is wrong with l.
func (l Limits) Validate() error {
	var errs []string
	if l.MaxRecords <= 0 {
		errs = append(errs, "max_records must be positive")
	}
	if l.FutureSkew < 0 {
		errs = append(errs, "future_skew must not be negative")
	}
	if l.Horizon <= 0 {
		errs = append(errs, "horizon must be positive")
	}
	if l.MaxWindow <= 0 || l.MaxWindow > MaxWindowLimit {
		errs = append(errs, fmt.Sprintf("max_window must be positive and at most %s", MaxWindowLimit))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Field shapes. Hand-written rather than regular expressions: these run for
// every field of every record and the regexps took 15 % of the ingest CPU.
func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }
func isHex(c byte) bool        { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// shaped reports whether s has 1..max bytes, starts (and, if edgeLast, ends)
// with an edge byte, and has only inner bytes in between.
func shaped(s string, max int, edge, inner func(byte) bool, edgeLast bool) bool {
	if len(s) == 0 || len(s) > max || !edge(s[0]) || (edgeLast && !edge(s[len(s)-1])) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !inner(s[i]) {
			return false
		}
	}
	return true
}

// isName: institutions, projects and apps are DNS labels, because they end up in
// host names, Docker networks and Prometheus labels.
func isName(s string) bool {
	return shaped(s, 63, isLowerAlnum, func(c byte) bool { return isLowerAlnum(c) || c == '-' }, true)
}

// isNode: node names are host names.
func isNode(s string) bool {
	return shaped(s, 253, isAlnum, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' }, true)
}

// isIdent: container, run and volume identifiers come from the runtime.
func isIdent(s string) bool {
	return shaped(s, 128, isAlnum, func(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == ':' || c == '-' }, false)
}

func isID(s string) bool { return len(s) == IDLength && shaped(s, IDLength, isHex, isHex, true) }

// ValidateLabels checks the labels every record and event carries: who (tenant,
// project, app, environment) and where (node).
func ValidateLabels(index int, tenant, project, app string, env Environment, node string) []batch.Problem {
	var ps []batch.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, batch.Problem{Index: index, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	for _, f := range []struct{ field, v string }{{"tenant", tenant}, {"project", project}, {"app", app}} {
		switch {
		case f.v == "":
			add(f.field, "is required")
		case !isName(f.v):
			add(f.field, "%q must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", batch.Truncate(f.v))
		}
	}
	if !env.Valid() {
		add("environment", "%q must be one of dev, test, acc, prod", batch.Truncate(string(env)))
	}
	switch {
	case node == "":
		add("node", "is required")
	case !isNode(node):
		add("node", "%q is not a valid host name", batch.Truncate(node))
	}
	return ps
}

// ValidateIdent checks a runtime identifier (container, run, volume, replica).
func ValidateIdent(index int, field, v string) []batch.Problem {
	if isIdent(v) {
		return nil
	}
	return []batch.Problem{{Index: index, Field: field, Reason: fmt.Sprintf("%q must be 1-128 letters, digits or '_.:-', starting with a letter or digit", batch.Truncate(v))}}
}

// Validate checks r as received at now and returns every problem found, each
// tagged with index. It returns nil for a valid record.
func Validate(r *Record, index int, now time.Time, lim Limits) []batch.Problem {
	var ps []batch.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, batch.Problem{Index: index, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	ident := func(field, v string) { ps = append(ps, ValidateIdent(index, field, v)...) }

	if r.SchemaVersion < MinSchemaVersion || r.SchemaVersion > SchemaVersion {
		add("schema_version", "%d is not supported (this collector accepts %d to %d)", r.SchemaVersion, MinSchemaVersion, SchemaVersion)
	}
	ps = append(ps, ValidateLabels(index, r.Tenant, r.Project, r.App, r.Environment, r.Node)...)
	if !r.Meter.Valid() {
		add("meter", "%q is not a known meter", batch.Truncate(string(r.Meter)))
	} else if r.Meter.SourceKind() == SourceVolume {
		ident("volume", r.Volume)
		if r.ContainerID != "" {
			add("container_id", "must be empty for meter %s, which is measured on a volume", r.Meter)
		}
		if r.RunID != "" {
			add("run_id", "must be empty for meter %s, which is measured on a volume", r.Meter)
		}
	} else {
		ident("container_id", r.ContainerID)
		ident("run_id", r.RunID)
		if r.Volume != "" {
			add("volume", "must be empty for meter %s, which is measured on a container", r.Meter)
		}
	}
	if r.Quantity < 0 {
		add("quantity", "%d is negative", r.Quantity)
	}

	windowOK := true
	switch {
	case r.WindowStart.IsZero():
		add("window_start", "is required")
		windowOK = false
	case r.WindowStart.Before(now.Add(-lim.Horizon)):
		add("window_start", "%s is older than the horizon of %s", r.WindowStart.UTC().Format(time.RFC3339), lim.Horizon)
		windowOK = false
	case r.WindowStart.Before(lim.Earliest):
		add("window_start", "%s is before the rate card's first version (effective %s): no price applies to it",
			r.WindowStart.UTC().Format(time.RFC3339), lim.Earliest.UTC().Format(time.RFC3339))
		windowOK = false
	}
	switch {
	case r.WindowEnd.IsZero():
		add("window_end", "is required")
		windowOK = false
	case r.WindowEnd.After(now.Add(lim.FutureSkew)):
		add("window_end", "%s is more than %s in the future", r.WindowEnd.UTC().Format(time.RFC3339), lim.FutureSkew)
		windowOK = false
	}
	if windowOK {
		d := r.WindowEnd.Sub(r.WindowStart)
		switch {
		case d <= 0:
			add("window_end", "must be after window_start")
		case d > lim.MaxWindow:
			add("window_end", "window of %s is longer than the maximum of %s", d, lim.MaxWindow)
		case r.Meter == MeterContainerSeconds && r.Quantity > int64((d+time.Second-1)/time.Second):
			add("quantity", "%d container seconds do not fit in a window of %s", r.Quantity, d)
		}
	}
	if !r.ReceivedAt.IsZero() {
		add("received_at", "is set by the collector and must be empty")
	}

	switch {
	case r.ID == "":
		add("id", "is required")
	case !isID(r.ID):
		add("id", "%q must be 32 lower-case hex digits", batch.Truncate(r.ID))
	case len(ps) == 0:
		// Only a record that is otherwise valid can have its id checked meaningfully.
		if want := deriveID(r); r.ID != string(want[:]) {
			add("id", "does not match the record's node, run, source, meter and window under schema_version %d (expected %s)", r.SchemaVersion, string(want[:]))
		}
	}
	return ps
}
