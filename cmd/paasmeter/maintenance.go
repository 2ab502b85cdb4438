package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

// withMaintenance runs fn with the maintenance windows' service of the hub,
// which it opens for fn (the state store alone) and closes after it.
func (a *app) withMaintenance(c *cobra.Command, fn func(h *hub.Hub, svc *maintenance.Service) error) error {
	return a.withHub(c.Context(), func(h *hub.Hub) error { return fn(h, h.Maintenance()) }, hub.Maintenance)
}

func (a *app) maintenanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "maintenance",
		Short: "List, declare and cancel maintenance windows, and silence their alerts",
		Long: `Maintenance windows (DESIGN.md §6), kept in the state store (store.state_dsn, else the
embedded one in store.data_dir) that the collectors share; the collector's admin API
(/api/v1/maintenance) does the same over HTTP.

A window is platform-wide (no --tenant), an institution's (--tenant), or one app's
(--tenant, --project and --app); one-off, or repeated --every day, week or month at
the same wall-clock time in time_zone until --until. It counts only if declared at
least maintenance.lead_time (default 120h) before it starts; once started it cannot
move or grow, but may end early. Every change is written to the state store's audit
log with --actor, and listed in the SLA report.`,
	}
	var tenant, from, to, format, actor string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the maintenance windows (in progress and to come, by default)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withMaintenance(c, func(h *hub.Hub, svc *maintenance.Service) (err error) {
				f, t := a.clock.Now(), time.Time{}
				if from != "" {
					if f, err = parseFlagTime("from", from, h.Location()); err != nil {
						return err
					}
				}
				if to != "" {
					if t, err = parseFlagTime("to", to, h.Location()); err != nil {
						return err
					}
				}
				ds, err := svc.List(c.Context(), tenant, f, t)
				if err != nil {
					return err
				}
				return a.writeDeclarations(ds, format)
			})
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only the windows that apply to this institution (its own, its apps', the platform's)")
	list.Flags().StringVar(&from, "from", "", "from this time (RFC 3339, or YYYY-MM-DD in time_zone; default now)")
	list.Flags().StringVar(&to, "to", "", "until this time, exclusive (default no end)")
	list.Flags().StringVar(&format, "format", "text", "output: text or json")

	var d struct {
		id, project, app, start, every, until, reason string
		duration                                      time.Duration
		version                                       int64
	}
	declare := &cobra.Command{
		Use:   "declare",
		Short: "Declare a maintenance window, or change one (--id and --version, with all its fields)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return a.withMaintenance(c, func(h *hub.Hub, svc *maintenance.Service) (err error) {
				loc := h.Location()
				decl := maintenance.Declaration{ID: d.id, Scope: sla.Scope{Tenant: tenant, Project: d.project, App: d.app},
					Duration: d.duration, Reason: d.reason, Version: d.version}
				if decl.Start, err = parseFlagTime("start", d.start, loc); err != nil {
					return err
				}
				if d.every != "" {
					decl.Recurrence = &maintenance.Recurrence{Every: d.every}
					if d.until != "" {
						if decl.Recurrence.Until, err = parseFlagTime("until", d.until, loc); err != nil {
							return err
						}
					}
				} else if d.until != "" {
					return errors.New("--until: only a recurring window (--every) has one")
				}
				if d.id != "" && d.version == 0 {
					return errors.New("--version: a change needs the version it was read at (maintenance list)")
				}
				stored, err := svc.Declare(c.Context(), decl, actor)
				if err != nil {
					return refusal(err)
				}
				return a.writeDeclarations([]maintenance.Declaration{stored}, format)
			})
		},
	}
	declare.Flags().StringVar(&d.id, "id", "", "the window to change (leave out to declare a new one)")
	declare.Flags().Int64Var(&d.version, "version", 0, "with --id: the version the window was read at")
	declare.Flags().StringVar(&tenant, "tenant", "", "the institution (none: platform-wide)")
	declare.Flags().StringVar(&d.project, "project", "", "with --app: the app's project")
	declare.Flags().StringVar(&d.app, "app", "", "with --tenant and --project: one app")
	declare.Flags().StringVar(&d.start, "start", "", "the (first) start: RFC 3339, or YYYY-MM-DDTHH:MM in time_zone")
	declare.Flags().DurationVar(&d.duration, "duration", 0, "the length of each occurrence, whole minutes, e.g. 2h or 90m")
	declare.Flags().StringVar(&d.every, "every", "", "daily, weekly or monthly (none: one-off)")
	declare.Flags().StringVar(&d.until, "until", "", "with --every: no occurrence starts at or after this time")
	declare.Flags().StringVar(&d.reason, "reason", "", "why, as the SLA report shows it")
	declare.Flags().StringVar(&format, "format", "text", "output: text or json")
	_ = declare.MarkFlagRequired("start")
	_ = declare.MarkFlagRequired("duration")
	_ = declare.MarkFlagRequired("reason")

	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a window's occurrences that have not started",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return a.withMaintenance(c, func(_ *hub.Hub, svc *maintenance.Service) error {
				stored, err := svc.Cancel(c.Context(), args[0], actor)
				if err != nil {
					return refusal(err)
				}
				return a.writeDeclarations([]maintenance.Declaration{stored}, format)
			})
		},
	}
	cancel.Flags().StringVar(&format, "format", "text", "output: text or json")
	for _, c := range []*cobra.Command{declare, cancel} {
		c.Flags().StringVar(&actor, "actor", "cli", "who acts, for the audit log")
	}
	cmd.AddCommand(list, declare, cancel, a.maintenanceSilenceCmd())
	return cmd
}

// maintenanceSilenceCmd is `paasmeter maintenance silence`: Alertmanager
// silences for the declared windows (maintenance.SyncSilences).
func (a *app) maintenanceSilenceCmd() *cobra.Command {
	var amURL, createdBy string
	var horizon, timeout time.Duration
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "silence",
		Short: "Create, update and expire the Alertmanager silences of the maintenance windows",
		Long: `Makes Alertmanager's silences follow the declared maintenance windows: one silence per
occurrence that has not ended and starts within --horizon, over the occurrence's time.
An app's window silences the alerts with its tenant, project and app labels, an
institution's those with its tenant label, a platform-wide one every alert with
severity page or ticket (all of the platform's rules). The silence's comment is
"paasmeter maintenance <occurrence id>: <reason>": a silence with that comment is
updated when its window moves or ends early, and expired when the window is cancelled;
other silences are never touched. Running it again changes nothing, so run it from cron
every few minutes, or after declaring. The SLO alerts need no silence (their rules
leave out the apps in a window).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if horizon <= 0 {
				return fmt.Errorf("--horizon: %s must be positive", horizon)
			}
			return a.withMaintenance(c, func(h *hub.Hub, svc *maintenance.Service) error {
				now := a.clock.Now()
				windows, err := svc.Windows(c.Context(), "", now, now.Add(horizon))
				if err != nil {
					return err
				}
				am := &maintenance.AlertmanagerClient{BaseURL: amURL, HTTP: &http.Client{Timeout: timeout}}
				r, err := maintenance.PlanSilences(c.Context(), am, windows, now, createdBy)
				if err != nil {
					return err
				}
				if !dryRun {
					r, err = maintenance.ApplySilences(c.Context(), am, r)
				}
				if werr := a.writeSilenceSync(r, h.Location(), dryRun); werr != nil {
					return errors.Join(err, werr)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&amURL, "alertmanager", "http://127.0.0.1:9093", "Alertmanager's URL (with its route prefix, if any)")
	cmd.Flags().DurationVar(&horizon, "horizon", 7*24*time.Hour, "silence the occurrences that start within this time from now")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	cmd.Flags().StringVar(&createdBy, "created-by", "paasmeter", "the silences' author, as Alertmanager shows it")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "timeout of each request to Alertmanager")
	return cmd
}

// writeSilenceSync prints the changes of a silence sync, times in loc, then
// their counts.
func (a *app) writeSilenceSync(r maintenance.SyncResult, loc *time.Location, dryRun bool) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tWINDOW\tSILENCE\tMATCHERS\tSTARTS\tENDS\tERROR")
	for _, c := range r.Changes {
		ms := make([]string, 0, len(c.Silence.Matchers))
		for _, m := range c.Silence.Matchers {
			ms = append(ms, m.String())
		}
		id, errText := c.Silence.ID, "-"
		if id == "" {
			id = "-" // to create
		}
		if c.Err != nil {
			errText = c.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Action, c.Occurrence, id, strings.Join(ms, ","),
			c.Silence.StartsAt.In(loc).Format(time.RFC3339), c.Silence.EndsAt.In(loc).Format(time.RFC3339), errText)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	note := ""
	if dryRun {
		note = " (dry run: nothing changed)"
	}
	_, err := fmt.Fprintf(a.stdout, "created %d, updated %d, expired %d, unchanged %d%s\n", r.Count(maintenance.SyncCreate),
		r.Count(maintenance.SyncUpdate), r.Count(maintenance.SyncExpire), r.Count(maintenance.SyncUnchanged), note)
	return err
}

// refusal says which rule refused a declaration.
func refusal(err error) error {
	if fe, ok := maintenance.IsRefusal(err); ok {
		return fmt.Errorf("refused: %w", fe)
	}
	return err
}

// parseFlagTime parses the time of flag name: RFC 3339, or a date or a date
// and time (YYYY-MM-DD, YYYY-MM-DDTHH:MM) in the platform's time zone.
func parseFlagTime(name, v string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s: %q is not an RFC 3339 time, YYYY-MM-DDTHH:MM or YYYY-MM-DD", name, v)
}

// writeDeclarations prints ds as a table or as JSON (the admin API's form).
func (a *app) writeDeclarations(ds []maintenance.Declaration, format string) error {
	switch format {
	case "json":
		return a.writeJSON(ds)
	case "text":
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSCOPE\tSTART\tDURATION\tREPEATS\tSTATE\tVERSION\tSOURCE\tREASON")
		for _, d := range ds {
			repeats := "-"
			if r := d.Recurrence; r != nil {
				repeats = r.Every
				if !r.Until.IsZero() {
					repeats += " until " + r.Until.Format(time.RFC3339)
				}
			}
			st := "declared " + d.DeclaredAt.Format(time.RFC3339)
			if d.Cancelled {
				st = "cancelled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Scope, d.Start.Format(time.RFC3339), d.Duration, repeats, st,
				d.Version, d.Source, termSafe(d.Reason))
		}
		return tw.Flush()
	}
	return fmt.Errorf("--format: %q must be text or json", format)
}
