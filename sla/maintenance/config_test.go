package maintenance_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

// The configuration file's maintenance section is tested here, where its
// windows go: config/ holds the parsing, this package the rules.

func noEnv(string) string { return "" }

const configTenants = "tenants:\n  - id: caami\n  - id: ona\n"

func TestTheConfigurationsWindowsReachTheService(t *testing.T) {
	c, err := config.Parse([]byte(configTenants+`maintenance:
  lead_time: 168h
  windows:
    - id: nightly-backup
      tenant: caami
      project: pricing
      app: api
      start: 2026-12-10T22:00:00+01:00
      duration: 90m
      every: daily
      until: 2027-03-01T00:00:00+01:00
      reason: nightly backups
    - id: platform-upgrade
      start: 2026-12-20T06:00:00Z
      duration: 2h
      reason: engine upgrade
`), "pm.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Maintenance.LeadTime != 7*24*time.Hour {
		t.Errorf("lead_time %s, want 168h", c.Maintenance.LeadTime)
	}
	decls, err := c.MaintenanceDeclarations()
	if err != nil {
		t.Fatal(err)
	}
	want := []maintenance.Declaration{
		{ID: "nightly-backup", Scope: sla.Scope{Tenant: "caami", Project: "pricing", App: "api"},
			Start: time.Date(2026, 12, 10, 21, 0, 0, 0, time.UTC), Duration: 90 * time.Minute,
			Recurrence: &maintenance.Recurrence{Every: maintenance.Daily, Until: time.Date(2027, 2, 28, 23, 0, 0, 0, time.UTC)},
			Reason:     "nightly backups", Source: maintenance.SourceConfig},
		{ID: "platform-upgrade", Start: time.Date(2026, 12, 20, 6, 0, 0, 0, time.UTC), Duration: 2 * time.Hour, Reason: "engine upgrade",
			Source: maintenance.SourceConfig},
	}
	if len(decls) != len(want) {
		t.Fatalf("%d declarations, want %d", len(decls), len(want))
	}
	for i := range want {
		if !sameDeclaration(decls[i], want[i]) {
			t.Errorf("declaration %d =\n%+v\nwant\n%+v", i, decls[i], want[i])
		}
	}
	// Stored at a collector's start, with the file's lead time: the
	// platform upgrade starts in 19 days, the backups in 9, under 7 days'
	// notice counted from now (December 1st).
	f := newFixture(t)
	loc, _ := c.Location()
	st, _ := f.open(t)
	svc, err := maintenance.New(maintenance.Options{Store: st, Location: loc, LeadTime: c.Maintenance.LeadTime, Institutions: c.Tenants, Clock: f.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	refusals, err := svc.SyncConfig(context.Background(), decls)
	if err != nil || len(refusals) != 0 {
		t.Fatalf("SyncConfig: %v, %v", refusals, err)
	}
	ws, err := svc.Windows(context.Background(), "caami", now, now.Add(10*day))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].ID != "nightly-backup#1" || !ws[0].Start.Equal(want[0].Start) {
		t.Errorf("caami's windows in the next 10 days: %+v, want the first nightly backup", ws)
	}
}

func TestTheMaintenanceSectionHasDefaults(t *testing.T) {
	c, err := config.Parse(nil, "empty.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Maintenance.LeadTime != maintenance.DefaultLeadTime || len(c.Maintenance.Windows) != 0 {
		t.Errorf("maintenance defaults to %+v, want a lead time of 120h and no window", c.Maintenance)
	}
}

func TestBadMaintenanceWindowsAreNamedWithTheirPath(t *testing.T) {
	window := func(fields string) string {
		return configTenants + "maintenance:\n  windows:\n    - id: w\n      start: 2026-12-10T22:00:00Z\n      duration: 1h\n      reason: r\n" + fields
	}
	tests := map[string]struct{ yaml, want string }{
		"a lead time of zero":          {"maintenance:\n  lead_time: 0s\n", "maintenance.lead_time:"},
		"a lead time of a year":        {"maintenance:\n  lead_time: 8760h\n", "maintenance.lead_time:"},
		"a window without id":          {configTenants + "maintenance:\n  windows:\n    - start: 2026-12-10T22:00:00Z\n      duration: 1h\n      reason: r\n", "maintenance.windows[0].id:"},
		"an id starting with a digit":  {strings.Replace(window(""), "id: w", "id: 42", 1), "maintenance.windows[0].id:"},
		"an id used twice":             {window("    - id: w\n      start: 2026-12-11T22:00:00Z\n      duration: 1h\n      reason: r\n"), "maintenance.windows[1].id: \"w\" is used twice"},
		"an unknown tenant":            {window("      tenant: nobody\n"), "maintenance.windows[0].tenant:"},
		"a start that is not RFC 3339": {strings.Replace(window(""), "2026-12-10T22:00:00Z", "2026-12-10 22:00", 1), "maintenance.windows[0].start:"},
		"a start with seconds":         {strings.Replace(window(""), "22:00:00Z", "22:00:30Z", 1), "maintenance.windows[0].start:"},
		"a duration over a day":        {strings.Replace(window(""), "duration: 1h", "duration: 25h", 1), "maintenance.windows[0].duration:"},
		"an unknown recurrence":        {window("      every: hourly\n"), "maintenance.windows[0].every:"},
		"an until before the start":    {window("      every: daily\n      until: 2026-12-01T00:00:00Z\n"), "maintenance.windows[0].until:"},
		"an until without recurrence":  {window("      until: 2027-01-01T00:00:00Z\n"), "maintenance.windows[0].until:"},
		"a project without app":        {window("      tenant: caami\n      project: pricing\n"), "maintenance.windows[0].app:"},
		"no reason":                    {strings.Replace(window(""), "      reason: r\n", "", 1), "maintenance.windows[0].reason:"},
		"an unknown key":               {window("      end: 2026-12-10T23:00:00Z\n"), "field end not found"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml), "bad.yaml", noEnv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
