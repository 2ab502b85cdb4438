package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla/credit"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/usage"
)

// benchInvoiceOptions are the flags of paasmeter-bench invoice.
type benchInvoiceOptions struct {
	institutions, records, batch int
	// dir holds the store to fill or reuse; empty fills a temporary one.
	dir        string
	keep       bool
	rateCard   string
	cpuProfile string
	// phase, when set, makes this process one measured phase of a run (the
	// parent re-executes itself with it) instead of the whole run.
	phase string
	// embedded runs the embedded store's phases; clickhouse the draft over
	// ClickHouse, on the server at chDSN or a throwaway one of chServer,
	// loaded with the same records through chClient.
	embedded, clickhouse bool
	chDSN                string
	chServer, chClient   string
}

// The bench's month and the moment its drafts are computed: November 2026 in
// Brussels (the billing issue's example month, 720 hours: no DST change), and
// after its grace period, so every record is billed.
var benchInvoiceNow = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

const (
	benchInvoiceZone  = "Europe/Brussels"
	benchInvoiceYear  = 2026
	benchInvoiceMonth = time.November
	// benchInvoiceMarker names the file a finished fill leaves beside the
	// store, so that a later run with --dir can skip the fill.
	benchInvoiceMarker = "bench-invoice.json"
	// benchInvoiceGenerator is the version of the records the fill writes:
	// bump it when they change, so that an older store is not reused.
	benchInvoiceGenerator = 1
)

// The phases of a run, each measured in its own process. The "-nocancel"
// ones run with a context that cannot be cancelled: given one that can,
// go-sqlite3 steps every row in a goroutine of its own to watch the context
// (SQLiteRows.Next), and the pairs show what that costs a scan of millions.
const (
	phaseSQLite        = "sqlite"
	phaseScan          = "scan"
	phaseScanNoCancel  = "scan-nocancel"
	phaseDraft         = "draft"
	phaseDraftNoCancel = "draft-nocancel"
	// phaseDraftClickHouse is the draft over ClickHouse (--clickhouse),
	// which sums in the server (metering.UsageAggregator).
	phaseDraftClickHouse = "draft-clickhouse"
	// The month-of-usage query (QueryUsage of every institution) and the
	// reconciliation of the month (billing.Reconcile), on the embedded store
	// and on ClickHouse: phases of paasmeter-bench curve.
	phaseQuery               = "query"
	phaseQueryClickHouse     = "query-clickhouse"
	phaseReconcile           = "reconcile"
	phaseReconcileClickHouse = "reconcile-clickhouse"
	// benchInvoiceDatabase is the ClickHouse database the bench fills.
	benchInvoiceDatabase = "paasmeter_bench_invoice"
)

// benchInvoicePhases are the phases in the order they run, with the names
// of their rows in the table.
var benchInvoicePhases = []struct{ phase, name string }{
	{phaseSQLite, "sqlite: SELECT tenant, meter, environment, sum(quantity), count(*) … GROUP BY 1,2,3"},
	{phaseScan, "scan: ScanUsage of every institution's month (Go per row, no rating)"},
	{phaseScanNoCancel, "scan, with a context that cannot be cancelled"},
	{phaseDraft, fmt.Sprintf("draft: Service.Draft of %04d-%02d, every institution", benchInvoiceYear, int(benchInvoiceMonth))},
	{phaseDraftNoCancel, "draft, with a context that cannot be cancelled"},
}

func (a *app) benchInvoiceCmd() *cobra.Command {
	var o benchInvoiceOptions
	cmd := &cobra.Command{
		Use:   "invoice",
		Short: "The draft invoice run of a month of usage on the embedded store vs the store's own read speed",
		Long: `Fill a fresh embedded metering store with --records usage records of November
2026 (Europe/Brussels) spread evenly over --institutions institutions (per
institution a volume's storage_byte_seconds and containers in prod and
nonprod with hourly windows of cpu_ns, memory_limit_byte_seconds,
memory_byte_seconds and net_tx_bytes), appended straight into the store in
batches of --batch, hour by hour across all institutions as the collector
would have received them. Then measure, each phase in its own process so
that its peak RSS and CPU time are its own, over the same store:

  1. sqlite: SELECT tenant, meter, environment, sum(quantity), count(*)
     FROM usage_records GROUP BY 1, 2, 3 through database/sql: the month
     aggregated inside SQLite, no Go per row;
  2. scan: ScanUsage of every institution's month, the records billing
     reads, summed in Go: a Go value per row, no rating;
  3. draft: the draft invoice run of the month for every institution
     (billing.Service.Draft) with the example rate card, 21 % VAT, no SLA
     figures, a fresh state store and the clock at 2026-12-04T09:00Z.

The scan and the draft run twice: with the command's context, as
'paasmeter invoice' runs, and with one that cannot be cancelled, which
spares go-sqlite3 a goroutine per row (it watches a cancellable context
while stepping each row).

Before the phases the store file is read once so that each finds it in the
page cache. The phases check each other: the same number of records, the
same total quantity, and every record on an invoice.

With --dir, the store is filled there and kept, and a later run with the
same --institutions and --records reuses it (a marker file beside the store
says what it holds). Without --dir the store is temporary and removed at the
end unless --keep.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.institutions < 1 || o.records < 1 || o.batch < 1 {
				return errors.New("bench invoice: --institutions, --records and --batch must be positive")
			}
			if !o.embedded && !o.clickhouse {
				return errors.New("bench invoice: --embedded=false needs --clickhouse: there is nothing to measure")
			}
			if o.phase != "" {
				return a.benchInvoicePhase(cmd.Context(), o)
			}
			return a.benchInvoice(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.institutions, "institutions", 1000, "institutions the records belong to (one invoice each)")
	f.IntVar(&o.records, "records", 10_000_000, "usage records of the month, over all institutions")
	f.IntVar(&o.batch, "batch", 20_000, "records per AppendUsage call while filling")
	f.StringVar(&o.dir, "dir", "", "directory of the store to fill, or to reuse when it holds the same records (default: a temporary one)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary store directory and print where it is")
	f.StringVar(&o.rateCard, "ratecard", filepath.Join("deploy", "examples", "ratecard.yaml"), "rate card of the draft run")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write the draft phase's CPU profile to this file")
	f.BoolVar(&o.embedded, "embedded", true, "measure the embedded store (false: ClickHouse only, for sizes the embedded store takes too long to fill)")
	f.BoolVar(&o.clickhouse, "clickhouse", false, "also draft the month over ClickHouse, loaded with the same records, and check the drafts are byte for byte the embedded store's")
	f.StringVar(&o.chDSN, "clickhouse-dsn", "", "clickhouse://host:port/database of a running server, whose database the bench fills or reuses (default: a throwaway server)")
	f.StringVar(&o.chServer, "clickhouse-server", "/usr/sbin/clickhouse-server", "the clickhouse-server program, without --clickhouse-dsn")
	f.StringVar(&o.chClient, "clickhouse-client", "clickhouse-client", "the clickhouse-client program, which loads the records")
	f.StringVar(&o.phase, "phase", "", "run one phase over --dir and print its result as JSON (what the bench runs in its child processes)")
	_ = f.MarkHidden("phase")
	return cmd
}

// benchMarker is the content of benchInvoiceMarker.
type benchMarker struct {
	Institutions int    `json:"institutions"`
	Records      int    `json:"records"`
	Month        string `json:"month"`
	Generator    int    `json:"generator"`
}

func (o benchInvoiceOptions) marker() benchMarker {
	return benchMarker{Institutions: o.institutions, Records: o.records, Generator: benchInvoiceGenerator,
		Month: fmt.Sprintf("%04d-%02d", benchInvoiceYear, int(benchInvoiceMonth))}
}

// benchPhaseResult is what a phase's process prints on its standard output.
type benchPhaseResult struct {
	Elapsed time.Duration `json:"elapsed"`
	Records int64         `json:"records"`
	// Quantity is the exact sum of the records' quantities (sqlite and scan).
	Quantity string `json:"quantity,omitempty"`
	// Invoices and Payable (the sum of their payable amounts) of the draft,
	// and Drafts the sha-256 of their JSON.
	Invoices int    `json:"invoices,omitempty"`
	Payable  string `json:"payable,omitempty"`
	Drafts   string `json:"drafts,omitempty"`
	// PeakRSS is the process's VmHWM in bytes.
	PeakRSS int64 `json:"peak_rss"`
	// cpu is the process's CPU time, from its rusage in the parent.
	cpu time.Duration
}

func (a *app) benchInvoice(ctx context.Context, o benchInvoiceOptions) (err error) {
	loc, err := time.LoadLocation(benchInvoiceZone)
	if err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "paasmeter-bench-invoice-"); err != nil {
			return err
		}
		if o.keep {
			defer fmt.Fprintf(a.stdout, "the store is kept in %s (reuse it with --dir)\n", dir)
		} else {
			defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
		}
	}
	o.dir = dir
	var drafts []benchPhaseResult
	if o.embedded {
		res, err := a.benchInvoiceEmbedded(ctx, o, loc)
		if err != nil {
			return err
		}
		drafts = append(drafts, res)
	}
	if o.clickhouse {
		res, err := a.benchInvoiceClickHouse(ctx, o, loc)
		if err != nil {
			return err
		}
		drafts = append(drafts, res)
	}
	if len(drafts) == 2 && drafts[0].Drafts != drafts[1].Drafts {
		return fmt.Errorf("the drafts over ClickHouse (sha-256 %s) are not byte for byte the embedded store's (%s)", drafts[1].Drafts, drafts[0].Drafts)
	}
	if len(drafts) == 2 {
		fmt.Fprintf(a.stdout, "drafts over ClickHouse and the embedded store: byte for byte the same (sha-256 of their JSON %s)\n", drafts[0].Drafts)
	}
	return nil
}

// benchInvoiceEmbedded fills (or reuses) the embedded store in o.dir, runs
// its phases and returns the draft phase's result.
func (a *app) benchInvoiceEmbedded(ctx context.Context, o benchInvoiceOptions, loc *time.Location) (benchPhaseResult, error) {
	fillLine, err := a.benchInvoiceFill(ctx, o, loc)
	if err != nil {
		return benchPhaseResult{}, err
	}
	path := filepath.Join(o.dir, embedded.FileName)
	st, err := os.Stat(path)
	if err != nil {
		return benchPhaseResult{}, err
	}
	fmt.Fprintf(a.stdout, "invoice benchmark: %d institutions, %d usage records of %04d-%02d (%s), embedded store of %.2f GiB; GOMAXPROCS=%d, load average %s\n",
		o.institutions, o.records, benchInvoiceYear, int(benchInvoiceMonth), benchInvoiceZone, float64(st.Size())/(1<<30), runtime.GOMAXPROCS(0), loadAverage())
	fmt.Fprintln(a.stdout, fillLine)

	// The fill just wrote the file, but a reused store may be cold: read it
	// once so that no phase pays the disk for the others.
	if err := warmFile(path); err != nil {
		return benchPhaseResult{}, err
	}
	results := map[string]benchPhaseResult{}
	for _, r := range benchInvoicePhases {
		fmt.Fprintf(a.stderr, "%s: running…\n", r.phase)
		res, err := a.benchInvoiceChild(ctx, o, r.phase)
		if err != nil {
			return benchPhaseResult{}, err
		}
		results[r.phase] = res
	}

	fmt.Fprintf(a.stdout, "%-84s %12s %10s %9s %9s\n", "phase (each in its own process)", "records/s", "elapsed", "CPU", "peak RSS")
	for _, r := range benchInvoicePhases {
		res := results[r.phase]
		fmt.Fprintf(a.stdout, "%-84s %12.0f %10s %9s %5d MiB\n", r.name, float64(res.Records)/res.Elapsed.Seconds(),
			res.Elapsed.Round(time.Millisecond), res.cpu.Round(10*time.Millisecond), res.PeakRSS>>20)
	}
	sq, sc, dr := results[phaseSQLite], results[phaseScan], results[phaseDraft]
	fmt.Fprintf(a.stdout, "draft: %d invoices, %d records billed, sum of payable EUR %s; time draft/scan %.1f×, scan/sqlite %.1f×, draft/sqlite %.1f×\n",
		dr.Invoices, dr.Records, dr.Payable, dr.Elapsed.Seconds()/sc.Elapsed.Seconds(), sc.Elapsed.Seconds()/sq.Elapsed.Seconds(),
		dr.Elapsed.Seconds()/sq.Elapsed.Seconds())
	fmt.Fprintf(a.stdout, "load average after the phases: %s\n", loadAverage())

	var errs []error
	for _, r := range benchInvoicePhases {
		res := results[r.phase]
		if res.Records != int64(o.records) {
			errs = append(errs, fmt.Errorf("the %s phase read %d records, want %d", r.phase, res.Records, o.records))
		}
		switch r.phase {
		case phaseScan, phaseScanNoCancel:
			if res.Quantity != sq.Quantity {
				errs = append(errs, fmt.Errorf("the %s phase sums %s, SQLite %s", r.phase, res.Quantity, sq.Quantity))
			}
		case phaseDraft, phaseDraftNoCancel:
			if res.Invoices != o.institutions || res.Payable != dr.Payable || res.Drafts != dr.Drafts {
				errs = append(errs, fmt.Errorf("the %s phase made %d invoices for %d institutions, payable %s (the draft phase: %s)",
					r.phase, res.Invoices, o.institutions, res.Payable, dr.Payable))
			}
		}
	}
	return dr, errors.Join(errs...)
}

// benchInvoiceFill fills o.dir's store with the bench's records, or finds it
// filled already, and returns the line that says which.
func (a *app) benchInvoiceFill(ctx context.Context, o benchInvoiceOptions, loc *time.Location) (string, error) {
	markerPath := filepath.Join(o.dir, benchInvoiceMarker)
	want, err := json.Marshal(o.marker())
	if err != nil {
		return "", err
	}
	if got, err := os.ReadFile(markerPath); err == nil && bytes.Equal(bytes.TrimSpace(got), want) {
		return fmt.Sprintf("fill: skipped, %s holds these records already (%s)", o.dir, benchInvoiceMarker), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	// A store without the marker, or with another one, is another run's or
	// an unfinished fill: adding to it would measure something else.
	if _, err := os.Stat(filepath.Join(o.dir, embedded.FileName)); err == nil {
		return "", fmt.Errorf("bench invoice: %s holds a store of other records or an unfinished fill (no matching %s): remove it or choose another --dir",
			o.dir, benchInvoiceMarker)
	}

	store, err := embedded.Open(ctx, o.dir)
	if err != nil {
		return "", err
	}
	defer store.Close()
	took, err := a.appendBenchRecords(ctx, store, o, loc)
	if err != nil {
		return "", fmt.Errorf("fill: %w", err)
	}
	// Closing checkpoints the WAL into the store file, so the phases read one file.
	if err := store.Close(); err != nil {
		return "", err
	}
	if err := os.WriteFile(markerPath, append(want, '\n'), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf("fill: %d records appended in %s (%.0f records/s, AppendUsage batches of %d, one hour of every institution after the other)",
		o.records, took.Round(time.Millisecond), float64(o.records)/took.Seconds(), o.batch), nil
}

// appendBenchRecords appends the bench's records to store in batches of
// o.batch, as the collector's batching writer would, and returns how long
// that took. Generating (a SHA-256 id per record) runs on one core while the
// store writes the previous batch on another.
func (a *app) appendBenchRecords(ctx context.Context, store metering.UsageAppender, o benchInvoiceOptions, loc *time.Location) (time.Duration, error) {
	start := time.Now()
	lastReport, done := start, 0
	batches := make(chan []usage.Record, 2)
	genCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	genErr := make(chan error, 1)
	go func() {
		defer close(batches)
		genErr <- benchInvoiceRecords(o.institutions, o.records, o.batch, loc, func(b []usage.Record) error {
			select {
			case batches <- b:
				return nil
			case <-genCtx.Done():
				return genCtx.Err()
			}
		})
	}()
	for b := range batches {
		res, err := store.AppendUsage(ctx, b)
		if err != nil {
			cancel()
			return 0, err
		}
		if len(res.Duplicates) > 0 {
			cancel()
			return 0, fmt.Errorf("the generator repeated %d record ids (the first: %s)", len(res.Duplicates), b[res.Duplicates[0]].ID)
		}
		done += len(b)
		if now := time.Now(); now.Sub(lastReport) >= 3*time.Second {
			lastReport = now
			fmt.Fprintf(a.stderr, "append: %d/%d records (%.0f %%), %.0f records/s\n", done, o.records,
				100*float64(done)/float64(o.records), float64(done)/now.Sub(start).Seconds())
		}
	}
	if err := <-genErr; err != nil {
		return 0, err
	}
	if done != o.records {
		return 0, fmt.Errorf("generated %d records, want %d", done, o.records)
	}
	return time.Since(start), nil
}

// warmFile reads path once, to bring it into the page cache.
func warmFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// benchInvoiceChild runs phase over o.dir in a child process of this binary
// and returns its result with its CPU time and peak RSS.
func (a *app) benchInvoiceChild(ctx context.Context, o benchInvoiceOptions, phase string) (benchPhaseResult, error) {
	self, err := os.Executable()
	if err != nil {
		return benchPhaseResult{}, err
	}
	args := []string{"invoice", "--phase", phase, "--dir", o.dir, "--institutions", strconv.Itoa(o.institutions),
		"--records", strconv.Itoa(o.records), "--ratecard", o.rateCard}
	if phase == phaseDraft && o.cpuProfile != "" {
		args = append(args, "--cpuprofile", o.cpuProfile)
	}
	if strings.HasSuffix(phase, "-clickhouse") {
		args = append(args, "--clickhouse-dsn", o.chDSN)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, a.stderr
	if err := cmd.Run(); err != nil {
		return benchPhaseResult{}, fmt.Errorf("%s phase: %w", phase, err)
	}
	var res benchPhaseResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return benchPhaseResult{}, fmt.Errorf("%s phase: its result %q: %w", phase, out.String(), err)
	}
	res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// benchInvoicePhase runs one phase in this process and prints its result.
func (a *app) benchInvoicePhase(ctx context.Context, o benchInvoiceOptions) error {
	if o.dir == "" {
		return errors.New("bench invoice --phase: --dir is required")
	}
	loc, err := time.LoadLocation(benchInvoiceZone)
	if err != nil {
		return err
	}
	period := calendar.Month{Year: benchInvoiceYear, Month: benchInvoiceMonth, Loc: loc}
	// The parent asks for the draft's profile only; any phase run by hand may.
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var res benchPhaseResult
	switch o.phase {
	case phaseSQLite:
		res, err = benchSQLiteAggregate(ctx, filepath.Join(o.dir, embedded.FileName))
	case phaseScan:
		res, err = benchScan(ctx, o, period)
	case phaseScanNoCancel:
		res, err = benchScan(context.WithoutCancel(ctx), o, period)
	case phaseDraft:
		res, err = a.benchDraft(ctx, o, period, openEmbedded)
	case phaseDraftNoCancel:
		res, err = a.benchDraft(context.WithoutCancel(ctx), o, period, openEmbedded)
	case phaseDraftClickHouse:
		res, err = a.benchDraft(ctx, o, period, openClickHouse)
	case phaseQuery:
		res, err = benchQuery(ctx, o, period, openEmbedded)
	case phaseQueryClickHouse:
		res, err = benchQuery(ctx, o, period, openClickHouse)
	case phaseReconcile:
		res, err = benchReconcile(ctx, o, period, openEmbedded)
	case phaseReconcileClickHouse:
		res, err = benchReconcile(ctx, o, period, openClickHouse)
	default:
		return fmt.Errorf("bench invoice: --phase %q is not one of the bench's phases", o.phase)
	}
	if err != nil {
		return fmt.Errorf("%s phase: %w", o.phase, err)
	}
	if res.PeakRSS, err = peakRSS(os.Getpid()); err != nil {
		return err
	}
	return json.NewEncoder(a.stdout).Encode(res)
}

// peakRSS returns the peak resident set (VmHWM) of process pid. Not getrusage's
// ru_maxrss: Go starts a child with vfork, so until its exec the child runs
// in the parent's address space, and Linux keeps that space's high-water mark
// in the child's ru_maxrss — a phase would report the fill's RSS.
func peakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// statusBytes returns the field (in kB) of process pid's /proc status, in bytes.
func statusBytes(pid int, field string) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	status, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s of %s: %w", field, path, err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, field)
}

// loadAverage returns the 1-minute load average: the machine may be shared.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b) + " unknown")[0]
}

// benchSQLiteAggregate times the month's aggregate done entirely by SQLite,
// on a connection opened as the store opens its read pool.
func benchSQLiteAggregate(ctx context.Context, path string) (benchPhaseResult, error) {
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?mode=ro&_busy_timeout=10000&_cache_size=-65536")
	if err != nil {
		return benchPhaseResult{}, err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return benchPhaseResult{}, err
	}
	var res benchPhaseResult
	sum := new(big.Int)
	start := time.Now()
	rows, err := db.QueryContext(ctx, `SELECT tenant, meter, environment, sum(quantity), count(*) FROM usage_records GROUP BY 1, 2, 3`)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	for rows.Next() {
		var tenant, meter, env string
		var q, n int64
		if err := rows.Scan(&tenant, &meter, &env, &q, &n); err != nil {
			return res, err
		}
		sum.Add(sum, big.NewInt(q))
		res.Records += n
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	res.Elapsed, res.Quantity = time.Since(start), sum.String()
	return res, nil
}

// benchScan times reading every institution's month through ScanUsage, as
// billing reads it, with nothing done per record but a count and a sum.
func benchScan(ctx context.Context, o benchInvoiceOptions, p calendar.Month) (benchPhaseResult, error) {
	store, err := embedded.Open(ctx, o.dir)
	if err != nil {
		return benchPhaseResult{}, err
	}
	defer store.Close()
	var res benchPhaseResult
	sum, q := new(big.Int), new(big.Int)
	start := time.Now()
	for i := range o.institutions {
		err := store.ScanUsage(ctx, metering.UsageFilter{Tenant: benchTenant(i), From: p.Start(), To: p.End()}, func(r usage.Record) error {
			res.Records++
			sum.Add(sum, q.SetInt64(r.Quantity))
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	res.Elapsed, res.Quantity = time.Since(start), sum.String()
	return res, nil
}

// benchNoSLA has no availability figures for anyone: the draft grants no SLA credit.
type benchNoSLA struct{}

func (benchNoSLA) SLA(context.Context, string, calendar.Month) (credit.Figures, bool, error) {
	return credit.Figures{}, false, nil
}

// benchStore opens the store a draft, query or reconcile phase reads.
type benchStore func(ctx context.Context, o benchInvoiceOptions) (billing.Counts, io.Closer, error)

func openEmbedded(ctx context.Context, o benchInvoiceOptions) (billing.Counts, io.Closer, error) {
	s, err := embedded.Open(ctx, o.dir)
	return s, s, err
}

func openClickHouse(ctx context.Context, o benchInvoiceOptions) (billing.Counts, io.Closer, error) {
	s, err := clickhouse.Open(ctx, o.chDSN, slog.New(slog.DiscardHandler))
	return s, s, err
}

// benchBillingInputs loads the rate card, opens the store that open opens
// and a throwaway embedded state store: what a billing phase reads. done
// closes and removes them.
func benchBillingInputs(ctx context.Context, o benchInvoiceOptions, p calendar.Month, open benchStore) (*ratecard.Card, billing.Counts, *stateembedded.Store, func(), error) {
	card, err := ratecard.Load(o.rateCard, p.Loc)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	store, closer, err := open(ctx, o)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	stateDir, err := os.MkdirTemp("", "paasmeter-bench-state-")
	if err != nil {
		closer.Close()
		return nil, nil, nil, nil, err
	}
	states, err := stateembedded.Open(ctx, stateDir)
	if err != nil {
		closer.Close()
		os.RemoveAll(stateDir)
		return nil, nil, nil, nil, err
	}
	return card, store, states, func() { states.Close(); os.RemoveAll(stateDir); closer.Close() }, nil
}

// benchDraft times the draft run of p for every institution over the store
// that open opens.
func (a *app) benchDraft(ctx context.Context, o benchInvoiceOptions, p calendar.Month, open benchStore) (benchPhaseResult, error) {
	card, store, states, done, err := benchBillingInputs(ctx, o, p, open)
	if err != nil {
		return benchPhaseResult{}, err
	}
	defer done()
	cfg := billing.DefaultConfig()
	cfg.Location = p.Loc
	cfg.Seller = billing.Seller{Name: "paasmeter bench"}
	for i := range o.institutions {
		cfg.Customers = append(cfg.Customers, billing.Customer{Tenant: benchTenant(i), Name: fmt.Sprintf("Institution %d", i+1),
			BuyerReference: fmt.Sprintf("PO-%04d", i+1), VAT: billing.VAT{Category: billing.VATStandard, Rate: decimal.NewFromInt(21)}})
	}
	svc, err := billing.New(billing.Options{Config: cfg, Card: card, Usage: store, SLA: benchNoSLA{}, State: states,
		Clock: clock.NewManual(benchInvoiceNow), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return benchPhaseResult{}, err
	}
	start := time.Now()
	last := start
	invoices, err := svc.Draft(ctx, p, nil, func(done, total int, tenant string) {
		if now := time.Now(); now.Sub(last) >= 3*time.Second || done == total {
			last = now
			fmt.Fprintf(a.stderr, "draft: %d/%d institutions (last %s), %s\n", done, total, tenant, now.Sub(start).Round(time.Millisecond))
		}
	})
	if err != nil {
		return benchPhaseResult{}, err
	}
	res := benchPhaseResult{Elapsed: time.Since(start), Invoices: len(invoices)}
	payable := decimal.Zero
	for _, inv := range invoices {
		payable = payable.Add(inv.Totals.Payable.Decimal)
		if len(inv.Inputs.Months) > 0 {
			res.Records += inv.Inputs.Months[0].Records
		}
	}
	res.Payable = payable.StringFixed(2)
	b, err := json.Marshal(invoices)
	if err != nil {
		return benchPhaseResult{}, err
	}
	res.Drafts = fmt.Sprintf("%x", sha256.Sum256(b))
	return res, nil
}

// benchTenant is the id of institution i (from 0).
func benchTenant(i int) string { return fmt.Sprintf("inst-%04d", i+1) }

// benchHours is the number of hourly windows of the bench's month.
const benchHours = 720

// benchContainerMeters are the meters of each container stream of an
// institution, in stream order. memory_byte_seconds (the working set) is not
// billed on the example card's reserved memory basis: the draft reads it and
// rates it at nothing, as it does for real agents' records.
var benchContainerMeters = []usage.Meter{usage.MeterCPU, usage.MeterMemoryLimit, usage.MeterMemory, usage.MeterNetTx}

// benchWindows returns how many hourly windows each stream of an institution
// with n records has: as few streams as hold n in 720 hours, the records
// spread evenly over them from the first hour of the month. Stream 0 is a
// volume, stream s ≥ 1 meter (s−1) mod 4 of container (s−1) / 4.
func benchWindows(n int) []int {
	if n == 0 {
		return nil
	}
	streams := (n + benchHours - 1) / benchHours
	w := make([]int, streams)
	for s := range w {
		w[s] = n / streams
		if s < n%streams {
			w[s]++
		}
	}
	return w
}

// splitmix64 scrambles x: the bench's deterministic pseudo-random numbers.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func benchRand(inst, stream, hour int) uint64 {
	return splitmix64(uint64(inst)<<40 ^ uint64(stream)<<20 ^ uint64(hour))
}

// benchInvoiceRecords generates the bench's records — the same for the same
// arguments — and passes them to fn in batches of up to batch, hour by hour:
// every record of one hour of the month, all institutions, before the next,
// as agents would have shipped them. Each institution gets records/institutions
// of them, the first records%institutions one more. Their received_at is
// shortly after their window's end.
func benchInvoiceRecords(institutions, records, batch int, loc *time.Location, fn func([]usage.Record) error) error {
	type stream struct {
		tmpl    usage.Record
		windows int
		// size is the volume's bytes, the container's memory limit in bytes,
		// or its CPU limit in millicores.
		size int64
	}
	gib := int64(1) << 30
	insts := make([][]stream, institutions)
	for i := range insts {
		n := records / institutions
		if i < records%institutions {
			n++
		}
		tenant := benchTenant(i)
		node := fmt.Sprintf("node-%d", i%16+1)
		for s, w := range benchWindows(n) {
			st := stream{windows: w}
			r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: tenant, Project: "platform", Node: node}
			if s == 0 {
				r.App, r.Environment, r.Volume, r.Meter = "db", usage.EnvProd, tenant+"-db-data", usage.MeterStorageByteSeconds
				st.size = (10 + int64(benchRand(i, 0, benchHours)%190)) * gib
			} else {
				c := (s - 1) / len(benchContainerMeters)
				r.Meter = benchContainerMeters[(s-1)%len(benchContainerMeters)]
				// Even containers run in prod, odd ones in a nonprod stage.
				r.Environment = usage.EnvProd
				if c%2 == 1 {
					r.Environment = []usage.Environment{usage.EnvTest, usage.EnvAcc, usage.EnvDev}[(c/2)%3]
				}
				r.App = fmt.Sprintf("svc-%d", c)
				r.ContainerID = fmt.Sprintf("%s-svc-%d-%s", tenant, c, r.Environment)
				r.RunID = r.ContainerID + "-r1"
				// One draw per container, shared by its meters.
				draw := benchRand(i, 1000+c, benchHours)
				switch r.Meter {
				case usage.MeterCPU:
					st.size = []int64{500, 1000, 2000}[draw%3]
				default:
					st.size = []int64{gib / 2, gib, 2 * gib, 4 * gib}[draw%4]
				}
			}
			st.tmpl = r
			insts[i] = append(insts[i], st)
		}
	}

	monthStart := time.Date(benchInvoiceYear, benchInvoiceMonth, 1, 0, 0, 0, 0, loc).UTC()
	out := make([]usage.Record, 0, batch)
	for h := range benchHours {
		ws := monthStart.Add(time.Duration(h) * time.Hour)
		we := ws.Add(time.Hour)
		for i, streams := range insts {
			for s := range streams {
				st := &streams[s]
				if h >= st.windows {
					continue
				}
				x := benchRand(i, s, h)
				r := st.tmpl
				r.WindowStart, r.WindowEnd = ws, we
				switch r.Meter {
				case usage.MeterStorageByteSeconds, usage.MeterMemoryLimit:
					r.Quantity = st.size * 3600
				case usage.MeterMemory: // 30 to 90 % of the limit
					r.Quantity = st.size * 3600 / 100 * int64(30+x%61)
				case usage.MeterCPU: // 5 to 80 % of the CPU limit, in ns
					r.Quantity = st.size * 3_600_000_000 / 100 * int64(5+x%76)
				case usage.MeterNetTx: // up to 300 MB an hour
					r.Quantity = int64(x % 300_000_000)
				}
				r.SetID()
				r.ReceivedAt = we.Add(time.Duration(20+(x>>32)%100) * time.Second)
				out = append(out, r)
				if len(out) == batch {
					if err := fn(out); err != nil {
						return err
					}
					// fn may keep the batch (the fill hands it to the writer).
					out = make([]usage.Record, 0, batch)
				}
			}
		}
	}
	if len(out) > 0 {
		return fn(out)
	}
	return nil
}
