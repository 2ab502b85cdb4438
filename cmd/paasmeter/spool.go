package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/runtime/node"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
)

func (a *app) spoolCmd() *cobra.Command {
	var dead bool
	var limit int
	inspect := &cobra.Command{
		Use:   "inspect",
		Short: "Print the pending entries of the spool (or, with --dead, the dead letters and why)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			sub := "outgoing"
			if dead {
				sub = "dead"
			}
			sp, err := spool.Open(filepath.Join(cfg.Agent.SpoolDir, sub), spool.Options{})
			if err != nil {
				return err
			}
			defer sp.Close()
			st := sp.Stats()
			fmt.Fprintf(a.stdout, "%s: %d entries, %d bytes pending", sub, st.Entries, st.Bytes)
			if !st.OldestAppendedAt.IsZero() {
				fmt.Fprintf(a.stdout, ", oldest appended %s", st.OldestAppendedAt.Format("2006-01-02T15:04:05Z07:00"))
			}
			fmt.Fprintln(a.stdout)
			entries, err := sp.Peek(limit, 64<<20)
			if err != nil {
				return err
			}
			for _, e := range entries {
				fmt.Fprintf(a.stdout, "%d %s %s\n", e.Seq, e.Kind, termSafe(string(e.Data))) // entries hold tenants' log lines
			}
			return nil
		},
	}
	inspect.Flags().BoolVar(&dead, "dead", false, "inspect the dead letters")
	inspect.Flags().IntVar(&limit, "limit", 100, "most entries to print")

	replay := &cobra.Command{
		Use:   "replay",
		Short: "Move the dead letters back to the outgoing spool, to be sent again (after the cause is fixed)",
		Long: `Move every dead letter back to the outgoing spool: the agent sends them again at its next
start. Fix the cause first (a collector that did not know the tenant, a clock that was
wrong); the collector deduplicates, so replaying twice cannot double-bill.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			out, deadSp, err := node.OpenSpools(cfg.Agent.SpoolDir, cfg.Agent.SpoolMaxBytes)
			if err != nil {
				return err
			}
			defer out.Close()
			defer deadSp.Close()
			moved := 0
			for {
				entries, err := deadSp.Peek(1000, 16<<20)
				if err != nil {
					return err
				}
				if len(entries) == 0 {
					break
				}
				byKind := map[string][][]byte{}
				var order []string
				for _, e := range entries {
					var dl ship.DeadLetter
					if err := json.Unmarshal(e.Data, &dl); err != nil {
						return fmt.Errorf("dead letter %d is not readable: %w", e.Seq, err)
					}
					if _, ok := byKind[dl.Kind]; !ok {
						order = append(order, dl.Kind)
					}
					byKind[dl.Kind] = append(byKind[dl.Kind], dl.Body())
				}
				for _, k := range order {
					if _, err := out.Append(k, byKind[k]...); err != nil {
						return err
					}
				}
				// Only once they are back in the outgoing spool do they leave the dead one.
				if err := deadSp.AckThrough(entries[len(entries)-1].Seq); err != nil {
					return err
				}
				moved += len(entries)
			}
			fmt.Fprintf(a.stdout, "replayed %d dead letter(s) into the outgoing spool\n", moved)
			return nil
		},
	}
	return group("spool", "Inspect the agent's spool and replay its dead letters",
		`The agent keeps what it produced in agent.spool_dir: outgoing/ (not yet acknowledged by the
collector) and dead/ (records the collector rejected as invalid, with the reasons).
The running agent holds a lock on both: stop it first.`,
		inspect, replay)
}
