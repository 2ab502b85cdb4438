package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// benchCurveOptions are the flags of paasmeter-bench curve: the invoice
// bench's (institutions, batch, rate card, ClickHouse programs) and the sizes.
type benchCurveOptions struct {
	inv   benchInvoiceOptions
	sizes []int
	store string
}

// benchCurveDatabase is the ClickHouse database each size of the curve fills.
const benchCurveDatabase = "paasmeter_bench_curve"

func (a *app) benchCurveCmd() *cobra.Command {
	var o benchCurveOptions
	var sizes string
	cmd := &cobra.Command{
		Use:   "curve",
		Short: "Ingest, month query, invoice draft and reconciliation at several sizes, with peak RSS and bytes on disk per record",
		Long: `For each of --sizes (e.g. 1M,10M,100M), on a fresh store of --store
(embedded, or clickhouse: a throwaway server unless --clickhouse-dsn):

  1. ingest: the invoice bench's month of records (November 2026, spread over
     --institutions) appended through the store's AppendUsage in batches of
     --batch, one batch at a time as the collector's batching writer flushes
     them (the accepted ledger filled as the collector fills it), in this
     process; on ClickHouse the parts are then merged (OPTIMIZE … FINAL), as a
     month's are by the time it is invoiced;
  2. disk: the table's bytes on disk (system.parts of usage_records, active
     parts; for the embedded store its directory) per record;
  3. query: the month-of-usage query (QueryUsage) of every institution;
  4. draft: the draft invoice run of the month (as paasmeter-bench invoice);
  5. reconcile: billing.Reconcile of the month for every institution
     (accepted = stored = rated per institution and day);

phases 3 to 5 each in their own process. Every phase checks the ground truth:
the number of records generated. Each row has the phase's elapsed time, CPU
and peak RSS (VmHWM, reset before the phase) of the process that ran it, and
of clickhouse-server when the bench started it. The last lines give, for each
phase, how its time grew from one size to the next.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.sizes, err = parseSizes(sizes); err != nil {
				return err
			}
			if o.store != "embedded" && o.store != "clickhouse" {
				return fmt.Errorf("bench curve: --store %q is neither embedded nor clickhouse", o.store)
			}
			if o.inv.institutions < 1 || o.inv.batch < 1 {
				return errors.New("bench curve: --institutions and --batch must be positive")
			}
			return a.benchCurve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sizes, "sizes", "1M,10M", "numbers of records of the month, ascending (k and M suffixes)")
	f.StringVar(&o.store, "store", "clickhouse", "the metering store: embedded or clickhouse")
	f.IntVar(&o.inv.institutions, "institutions", 1000, "institutions the records belong to (one invoice each)")
	f.IntVar(&o.inv.batch, "batch", 20_000, "records per AppendUsage call")
	f.StringVar(&o.inv.rateCard, "ratecard", filepath.Join("deploy", "examples", "ratecard.yaml"), "rate card of the draft and the reconciliation")
	f.StringVar(&o.inv.chDSN, "clickhouse-dsn", "", "clickhouse://host:port/db of a running server, in which the bench fills database "+benchCurveDatabase+" (default: a throwaway server)")
	f.StringVar(&o.inv.chServer, "clickhouse-server", "/usr/sbin/clickhouse-server", "the clickhouse-server program, without --clickhouse-dsn")
	f.StringVar(&o.inv.chClient, "clickhouse-client", "clickhouse-client", "the clickhouse-client program, which merges and measures the table")
	return cmd
}

// parseSizes parses a list like "1M,10M,300k" into ascending positive sizes.
func parseSizes(list string) ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		mult := 1
		switch {
		case strings.HasSuffix(s, "M"):
			s, mult = strings.TrimSuffix(s, "M"), 1_000_000
		case strings.HasSuffix(s, "k"):
			s, mult = strings.TrimSuffix(s, "k"), 1_000
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bench curve: --sizes: %q is not a positive number of records", s)
		}
		if len(out) > 0 && n*mult <= out[len(out)-1] {
			return nil, errors.New("bench curve: --sizes must be ascending")
		}
		out = append(out, n*mult)
	}
	return out, nil
}

// curveRow is one phase at one size.
type curveRow struct {
	phase   string
	records int
	elapsed time.Duration
	// cpu and rss are the process's that ran the phase; serverCPU and
	// serverRSS clickhouse-server's (-1: unknown).
	cpu, serverCPU time.Duration
	rss, serverRSS int64
}

func (a *app) benchCurve(ctx context.Context, o benchCurveOptions) (err error) {
	loc, err := time.LoadLocation(benchInvoiceZone)
	if err != nil {
		return err
	}
	c := curveRun{app: a, o: o, loc: loc}
	if o.store == "clickhouse" {
		if o.inv.chDSN == "" {
			srv, stop, err := startThrowawayClickHouse(ctx, o.inv.chServer)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, stop()) }()
			o.inv.chDSN, c.serverPid = srv.DSN(benchCurveDatabase), srv.Pid()
		}
		dsn, err := clickhouse.ParseDSN(o.inv.chDSN)
		if err != nil {
			return err
		}
		if dsn.Cluster != "" {
			return errors.New("bench curve: it measures one ClickHouse server; leave cluster= out of the DSN")
		}
		// Every size gets the curve's database, whatever the DSN named.
		u, err := url.Parse(o.inv.chDSN)
		if err != nil {
			return fmt.Errorf("bench curve: --clickhouse-dsn: %w", err)
		}
		u.Path = "/" + benchCurveDatabase
		c.o.inv.chDSN = u.String()
		c.cli = chClient{program: o.inv.chClient, addr: dsn.Options.Addr[0], user: dsn.Options.Auth.Username, password: dsn.Options.Auth.Password}
	}
	fmt.Fprintf(a.stdout, "curve on the %s store: sizes %v, %d institutions, batches of %d; GOMAXPROCS=%d, load average %s\n",
		o.store, o.sizes, o.inv.institutions, o.inv.batch, runtime.GOMAXPROCS(0), loadAverage())
	fmt.Fprintf(a.stdout, "%-10s %-10s %10s %12s %9s %9s %11s %11s\n", "records", "phase", "elapsed", "records/s", "CPU", "peak RSS", "CPU server", "RSS server")
	var all [][]curveRow
	for _, n := range o.sizes {
		rows, err := c.size(ctx, n)
		if err != nil {
			return fmt.Errorf("%d records: %w", n, err)
		}
		all = append(all, rows)
	}
	for i := 1; i < len(all); i++ {
		k := float64(o.sizes[i]) / float64(o.sizes[i-1])
		var parts []string
		for j, r := range all[i] {
			g := r.elapsed.Seconds() / all[i-1][j].elapsed.Seconds()
			parts = append(parts, fmt.Sprintf("%s ×%.1f (exponent %.2f)", r.phase, g, math.Log(g)/math.Log(k)))
		}
		fmt.Fprintf(a.stdout, "growth %d→%d records (×%.0f): %s\n", o.sizes[i-1], o.sizes[i], k, strings.Join(parts, ", "))
	}
	fmt.Fprintf(a.stdout, "load average at the end: %s\n", loadAverage())
	return nil
}

// curveRun is one run of paasmeter-bench curve.
type curveRun struct {
	*app
	o   benchCurveOptions
	loc *time.Location
	// cli and serverPid are ClickHouse's (serverPid 0 when the bench did not start it).
	cli       chClient
	serverPid int
}

// size fills a fresh store with n records, measures its phases, prints
// their rows and removes the store.
func (c *curveRun) size(ctx context.Context, n int) (_ []curveRow, err error) {
	o := c.o.inv
	o.records = n
	suffix := ""
	if c.o.store == "clickhouse" {
		suffix = "-clickhouse"
		if _, err := c.cli.run(ctx, "DROP DATABASE IF EXISTS "+benchCurveDatabase); err != nil {
			return nil, err
		}
		defer func() {
			_, dropErr := c.cli.run(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+benchCurveDatabase)
			err = errors.Join(err, dropErr)
		}()
	}
	// The embedded store's directory; on ClickHouse the phases need one too.
	if o.dir, err = os.MkdirTemp("", "paasmeter-bench-curve-"); err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(o.dir)) }()
	c.o.inv = o
	ingest, extra, err := c.ingest(ctx, o)
	if err != nil {
		return nil, err
	}
	rows := []curveRow{ingest}
	c.print(rows[0])
	bytes, err := c.diskBytes(ctx, o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.stdout, "%-10d disk: %d bytes, %.1f bytes per record%s\n", n, bytes, float64(bytes)/float64(n), extra)
	for _, phase := range []string{phaseQuery, phaseDraft, phaseReconcile} {
		fmt.Fprintf(c.stderr, "%d records, %s: running…\n", n, phase+suffix)
		c.resetPeak(c.serverPid)
		cpu0 := c.serverCPU()
		res, err := c.benchInvoiceChild(ctx, o, phase+suffix)
		if err != nil {
			return nil, err
		}
		if res.Records != int64(n) {
			return nil, fmt.Errorf("the %s phase counted %d records, want %d", phase, res.Records, n)
		}
		r := curveRow{phase: phase, records: n, elapsed: res.Elapsed, cpu: res.cpu, rss: res.PeakRSS, serverCPU: -1, serverRSS: -1}
		c.serverFigures(&r, cpu0)
		c.print(r)
		rows = append(rows, r)
	}
	return rows, nil
}

// ingest appends o.records records to a fresh store in this process and, on
// ClickHouse, merges them; extra says how long the merge took.
func (c *curveRun) ingest(ctx context.Context, o benchInvoiceOptions) (curveRow, string, error) {
	var store interface {
		metering.UsageAppender
		Close() error
	}
	var err error
	if c.o.store == "clickhouse" {
		store, err = clickhouse.Open(ctx, o.chDSN, slog.New(slog.DiscardHandler)) // creates the schema
	} else {
		store, err = embedded.Open(ctx, o.dir)
	}
	if err != nil {
		return curveRow{}, "", err
	}
	self := os.Getpid()
	c.resetPeak(self)
	c.resetPeak(c.serverPid)
	cpu0, server0 := selfCPU(), c.serverCPU()
	fmt.Fprintf(c.stderr, "%d records, ingest: running…\n", o.records)
	took, err := c.appendBenchRecords(ctx, store, o, c.loc)
	// Closing checkpoints the embedded store's WAL into its file: part of
	// the ingest's cost, and the file the disk figure measures.
	if err = errors.Join(err, store.Close()); err != nil {
		return curveRow{}, "", fmt.Errorf("ingest: %w", err)
	}
	r := curveRow{phase: "ingest", records: o.records, elapsed: took, cpu: selfCPU() - cpu0, serverCPU: -1, serverRSS: -1}
	if r.rss, err = peakRSS(self); err != nil {
		return curveRow{}, "", err
	}
	c.serverFigures(&r, server0)
	if c.o.store != "clickhouse" {
		return r, "", nil
	}
	start := time.Now()
	parts, partitions, err := c.cli.merge(ctx, benchCurveDatabase, "usage_records")
	if err != nil {
		return curveRow{}, "", err
	}
	return r, fmt.Sprintf(" (system.parts, active, after OPTIMIZE … FINAL of every partition in %s: %d parts, %d partitions)",
		time.Since(start).Round(time.Millisecond), parts, partitions), nil
}

// diskBytes is the bytes the records take on disk: the usage table's active
// parts on ClickHouse, the store's directory for the embedded store.
func (c *curveRun) diskBytes(ctx context.Context, o benchInvoiceOptions) (int64, error) {
	if c.o.store == "clickhouse" {
		out, err := c.cli.run(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = '"+benchCurveDatabase+"' AND table = 'usage_records'")
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	}
	var total int64
	err := filepath.WalkDir(o.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	return total, err
}

func (c *curveRun) print(r curveRow) {
	server := func(cpu time.Duration, rss int64) (string, string) {
		if cpu < 0 || rss < 0 {
			return "-", "-"
		}
		return cpu.Round(10 * time.Millisecond).String(), fmt.Sprintf("%d MiB", rss>>20)
	}
	sc, sr := server(r.serverCPU, r.serverRSS)
	fmt.Fprintf(c.stdout, "%-10d %-10s %10s %12.0f %9s %5d MiB %11s %11s\n", r.records, r.phase, r.elapsed.Round(time.Millisecond),
		float64(r.records)/r.elapsed.Seconds(), r.cpu.Round(10*time.Millisecond), r.rss>>20, sc, sr)
}

// resetPeak resets process pid's peak RSS (VmHWM) to its current RSS, so
// that the next phase's peak is its own; a failure is reported, not fatal.
func (c *curveRun) resetPeak(pid int) {
	if pid <= 0 {
		return
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		fmt.Fprintf(c.stderr, "peak RSS of process %d not reset (it is the peak since the process started): %v\n", pid, err)
	}
}

func (c *curveRun) serverCPU() time.Duration {
	if c.serverPid <= 0 {
		return -1
	}
	return processCPU(c.serverPid)
}

// serverFigures sets r's clickhouse-server CPU (since cpu0) and peak RSS.
func (c *curveRun) serverFigures(r *curveRow, cpu0 time.Duration) {
	if c.serverPid <= 0 || cpu0 < 0 {
		return
	}
	r.serverCPU = processCPU(c.serverPid) - cpu0
	if rss, err := peakRSS(c.serverPid); err == nil {
		r.serverRSS = rss
	}
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchQuery times the month-of-usage query (QueryUsage) of every institution
// over the store that open opens, and counts the records it covers.
func benchQuery(ctx context.Context, o benchInvoiceOptions, p calendar.Month, open benchStore) (benchPhaseResult, error) {
	store, closer, err := open(ctx, o)
	if err != nil {
		return benchPhaseResult{}, err
	}
	defer closer.Close()
	var res benchPhaseResult
	start := time.Now()
	for i := range o.institutions {
		rows, err := store.QueryUsage(ctx, metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: benchTenant(i), From: p.Start(), To: p.End()}})
		if err != nil {
			return res, err
		}
		for _, r := range rows {
			res.Records += r.Records
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// benchReconcile times the reconciliation of p for every institution over
// the store that open opens, with no invoice issued, and checks that every
// day's accepted, stored and rated counts agree.
func benchReconcile(ctx context.Context, o benchInvoiceOptions, p calendar.Month, open benchStore) (benchPhaseResult, error) {
	card, store, states, done, err := benchBillingInputs(ctx, o, p, open)
	if err != nil {
		return benchPhaseResult{}, err
	}
	defer done()
	tenants := make([]string, o.institutions)
	for i := range tenants {
		tenants[i] = benchTenant(i)
	}
	start := time.Now()
	days, err := billing.Reconcile(ctx, store, states, card, tenants, p)
	if err != nil {
		return benchPhaseResult{}, err
	}
	res := benchPhaseResult{Elapsed: time.Since(start)}
	for _, d := range days {
		if d.Accepted != d.Stored || d.Stored != d.Rated {
			return res, fmt.Errorf("%s on %s: accepted %d, stored %d, rated %d", d.Tenant, d.Day, d.Accepted, d.Stored, d.Rated)
		}
		res.Records += d.Stored
	}
	return res, nil
}
