// Command paasmeter-bench holds the load drivers that measure paasmeter
// against the raw speed of its stores (docs/benchmarks.md): built by
// `make bench`, kept out of the production binary so that bin/paasmeter links
// no load generator and no test helper.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	_ "time/tzdata" // the bench's month is in Europe/Brussels, on hosts without tzdata too
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "paasmeter-bench:", err)
		os.Exit(1)
	}
}

// app is what every benchmark shares: where it writes its table and its progress.
type app struct {
	stdout, stderr io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "paasmeter-bench",
		Short:         "Load drivers that measure paasmeter against the raw speed of its store",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(a.benchIngestCmd(), a.benchAgentCmd(), a.benchClickHouseCmd(), a.benchInvoiceCmd(), a.benchAbuseCmd(), a.benchKubeNodeCmd(), a.benchCurveCmd())
	return root
}
