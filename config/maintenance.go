package config

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

// MaintenanceConfig is the maintenance section (DESIGN.md §6): the lead time
// and the windows the file declares. The collector stores the windows at
// start (maintenance.Service.SyncConfig): a new one counts as declared then,
// so a window added to the file must start at least lead_time after the
// collector that reads it starts.
type MaintenanceConfig struct {
	// LeadTime is how long before it starts a window must be declared.
	LeadTime time.Duration `yaml:"lead_time"`
	// Windows are declared by the file, each under its own id.
	Windows []MaintenanceWindowConfig `yaml:"windows"`
}

// MaintenanceWindowConfig is one window of the file.
type MaintenanceWindowConfig struct {
	// ID names the window for good: changing it declares another window.
	ID string `yaml:"id"`
	// Tenant, Project and App are the scope: none for the platform, tenant
	// for an institution, all three for one app.
	Tenant  string `yaml:"tenant"`
	Project string `yaml:"project"`
	App     string `yaml:"app"`
	// Start is an RFC 3339 time, e.g. 2026-12-10T22:00:00+01:00: the first
	// occurrence's start.
	Start    string        `yaml:"start"`
	Duration time.Duration `yaml:"duration"`
	// Every is daily, weekly or monthly for a recurring window, at Start's
	// wall-clock time in time_zone; empty for a one-off window.
	Every string `yaml:"every"`
	// Until ends a recurring window (RFC 3339): no occurrence starts at or
	// after it. Empty: no end.
	Until  string `yaml:"until"`
	Reason string `yaml:"reason"`
}

// maxLeadTime keeps a typo (lead_time: 1200h is fine, 12000h is not) from
// making every window a year out.
const maxLeadTime = 90 * 24 * time.Hour

// configWindowID is the id of a window of the file: it starts with a letter,
// so it never meets the numbers the store gives the API's windows.
var configWindowID = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// defaultMaintenance is MaintenanceConfig's defaults.
func defaultMaintenance() MaintenanceConfig {
	return MaintenanceConfig{LeadTime: maintenance.DefaultLeadTime}
}

// validateMaintenance returns the maintenance section's problems, each with
// its path; known says whether a tenant is configured.
func (c *Config) validateMaintenance(known map[string]bool) []error {
	var errs []error
	m := c.Maintenance
	if m.LeadTime <= 0 || m.LeadTime > maxLeadTime {
		errs = append(errs, fmt.Errorf("maintenance.lead_time: %s must be positive and at most %s (default %s)", m.LeadTime, maxLeadTime, maintenance.DefaultLeadTime))
	}
	ids := map[string]bool{}
	for i, w := range m.Windows {
		path := fmt.Sprintf("maintenance.windows[%d]", i)
		switch {
		case !configWindowID.MatchString(w.ID):
			errs = append(errs, fmt.Errorf("%s.id: %q must be 1-63 lower-case letters, digits or '-', starting with a letter", path, w.ID))
		case ids[w.ID]:
			errs = append(errs, fmt.Errorf("%s.id: %q is used twice", path, w.ID))
		}
		ids[w.ID] = true
		if w.Tenant != "" && !known[w.Tenant] {
			errs = append(errs, fmt.Errorf("%s.tenant: %q is not one of the configured tenants", path, w.Tenant))
		}
		if _, err := w.declaration(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", path, err))
		}
	}
	return errs
}

// MaintenanceDeclarations returns the file's windows as declarations, in
// the order of the file (validated by Load).
func (c *Config) MaintenanceDeclarations() ([]maintenance.Declaration, error) {
	out := make([]maintenance.Declaration, 0, len(c.Maintenance.Windows))
	for i, w := range c.Maintenance.Windows {
		d, err := w.declaration()
		if err != nil {
			return nil, fmt.Errorf("maintenance.windows[%d].%w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// declaration converts w, checking it on its own (not against the clock:
// the collector does, when it stores it). Errors name the file's keys.
func (w MaintenanceWindowConfig) declaration() (maintenance.Declaration, error) {
	d := maintenance.Declaration{ID: w.ID, Scope: sla.Scope{Tenant: w.Tenant, Project: w.Project, App: w.App},
		Duration: w.Duration, Reason: w.Reason, Source: maintenance.SourceConfig}
	var err error
	if d.Start, err = time.Parse(time.RFC3339, w.Start); err != nil {
		return d, fmt.Errorf("start: %q is not an RFC 3339 time such as 2026-12-10T22:00:00+01:00", w.Start)
	}
	switch {
	case w.Every != "":
		d.Recurrence = &maintenance.Recurrence{Every: w.Every}
		if w.Until != "" {
			if d.Recurrence.Until, err = time.Parse(time.RFC3339, w.Until); err != nil {
				return d, fmt.Errorf("until: %q is not an RFC 3339 time", w.Until)
			}
		}
	case w.Until != "":
		return d, errors.New("until: only a recurring window (every) has one")
	}
	if err := maintenance.ValidateConfig(d); err != nil {
		if fe, ok := maintenance.IsRefusal(err); ok {
			// The file spells the recurrence's fields flat.
			field := map[string]string{"recurrence.every": "every", "recurrence.until": "until"}[fe.Field]
			if field == "" {
				field = fe.Field
			}
			return d, fmt.Errorf("%s: %s", field, fe.Reason)
		}
		return d, err
	}
	return d, nil
}
