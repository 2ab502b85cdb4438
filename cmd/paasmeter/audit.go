package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/accesslog"
)

func (a *app) auditCmd() *cobra.Command {
	return group("audit", "Check the access log of operators' reads", "", a.auditVerifyCmd())
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "verify [--file F]",
		Short: "Check the access log's hash chain; name the first broken line (exit 1)",
		Long: `Each entry of the access log (collector.access_log) holds the SHA-256 of the line
before it. verify reads the file and checks the chain: a line changed, inserted or
removed breaks it at the next line, which is named, and the command exits 1. When
the chain is intact it prints the number of entries and the head (the last line's
hash): kept somewhere else, the head shows later whether the file was cut short or
rewritten whole, which the chain alone cannot. Without --file it checks the file the
configuration names.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path := file
			if path == "" {
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				path = cfg.AccessLogPath()
			}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			defer f.Close()
			c, err := accesslog.Verify(f)
			var broken *accesslog.BrokenError
			if errors.As(err, &broken) {
				return fmt.Errorf("audit verify: %s: the chain breaks at line %d: %s", path, broken.Line, broken.Reason)
			}
			if err != nil {
				return fmt.Errorf("audit verify: %s: %w", path, err)
			}
			fmt.Fprintf(a.stdout, "%s: %d entries, chain intact", path, c.Entries)
			if c.Unchained > 0 {
				fmt.Fprintf(a.stdout, " (the first %d, written before the chain was introduced, are not covered)", c.Unchained)
			}
			fmt.Fprintf(a.stdout, "\nhead: %s\n", c.Head)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "access log file (default: collector.access_log of the configuration)")
	return cmd
}
