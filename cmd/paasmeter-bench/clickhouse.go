package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chserver"
	"github.com/paasmeter/paasmeter/usage"
)

// benchClickHouseOptions are the flags of paasmeter-bench clickhouse.
type benchClickHouseOptions struct {
	spec loadgen.Spec
	// dsn names the server and the prefix of the databases the bench creates;
	// empty starts a throwaway server.
	dsn            string
	client, server string
	queryRecords   int
	keepDatabases  bool
	// cpuProfile, when set, is where the http phase's CPU profile goes.
	cpuProfile string
}

func (a *app) benchClickHouseCmd() *cobra.Command {
	o := benchClickHouseOptions{spec: loadgen.Spec{Tenant: "bench", Node: "bench-node"}}
	cmd := &cobra.Command{
		Use:   "clickhouse",
		Short: "Usage records per second through the collector into ClickHouse vs clickhouse-client; the month query at 10M records",
		Long: `Measure, in one run against one ClickHouse server:

  1. clickhouse-client inserting --records generated usage rows from a file
     (RowBinary, the columns of the store's usage_records table): the server's
     own speed;
  2. the same records posted as JSON batches by --concurrency clients (agents)
     to a collector on loopback HTTP, which stores them through the batching
     writer (store.batch defaults): paasmeter's ingest speed;
  3. the same records appended straight into the ClickHouse store by
     --concurrency writers (AppendUsage, no HTTP, no batching writer): what
     many small inserts cost the server;
  4. the month-of-usage query of every institution (QueryUsage per institution,
     grouped by meter, exact sums checked) over --query-records records of one
     month, loaded by clickhouse-client and queried before any merge.

Each ingest phase prints its records/s and the CPU time it took in this
process (the collector and the load driver; for phase 1, clickhouse-client)
and in the server (when the bench started it). Each phase gets a fresh
database named after the DSN's (…_client, …_http, …_direct, …_query),
dropped when the phase ends unless --keep. Without --dsn, a throwaway
clickhouse-server (--clickhouse-server) is started on a free loopback port
with the tests' configuration and its data in a temporary directory, and
removed at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.spec.Validate(); err != nil {
				return err
			}
			if o.queryRecords <= 0 || o.spec.Tenants < 1 {
				return errors.New("bench clickhouse: --query-records and --tenants must be positive")
			}
			return a.benchClickHouse(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dsn, "dsn", "", "clickhouse://host:port/database of a running server (default: start a throwaway one)")
	f.IntVar(&o.spec.Records, "records", 1_000_000, "records of each ingest phase")
	// An agent ships batches of up to 1,000 records (runtime/ship), and a
	// collector of a national platform hears from many agents at once.
	f.IntVar(&o.spec.BatchSize, "batch", 1000, "records per batch (HTTP request, or direct append)")
	f.IntVar(&o.spec.Concurrency, "concurrency", 64, "concurrent HTTP clients (agents) and direct writers")
	f.IntVar(&o.spec.Tenants, "tenants", 50, "institutions the records belong to")
	f.IntVar(&o.queryRecords, "query-records", 10_000_000, "records of the month the query reads")
	f.StringVar(&o.client, "clickhouse-client", "clickhouse-client", "the clickhouse-client program")
	f.StringVar(&o.server, "clickhouse-server", "/usr/sbin/clickhouse-server", "the clickhouse-server program, without --dsn")
	f.BoolVar(&o.keepDatabases, "keep", false, "keep the bench's databases")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the http phase (the collector and its clients) to this file")
	return cmd
}

// chBench is one run of paasmeter-bench clickhouse against one server.
type chBench struct {
	o   benchClickHouseOptions
	dsn *clickhouse.DSN
	cli chClient
	// serverPid is the server's process when the bench started it, for its CPU time.
	serverPid int
}

func (a *app) benchClickHouse(ctx context.Context, o benchClickHouseOptions) (err error) {
	serverPid := 0
	if o.dsn == "" {
		srv, stop, err := startThrowawayClickHouse(ctx, o.server)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
		o.dsn, serverPid = srv.DSN("paasmeter_bench"), srv.Pid()
	}
	dsn, err := clickhouse.ParseDSN(o.dsn)
	if err != nil {
		return err
	}
	if dsn.Cluster != "" {
		return errors.New("bench clickhouse: it measures one server; leave cluster= out of the DSN")
	}
	b := &chBench{o: o, dsn: dsn, serverPid: serverPid,
		cli: chClient{program: o.client, addr: dsn.Options.Addr[0], user: dsn.Options.Auth.Username, password: dsn.Options.Auth.Password}}
	version, err := b.cli.run(ctx, "SELECT version()")
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "clickhouse benchmark: ClickHouse %s at %s; %d records per ingest phase, batches of %d, %d concurrent clients, %d institutions; GOMAXPROCS=%d\n",
		strings.TrimSpace(version), b.cli.addr, o.spec.Records, o.spec.BatchSize, o.spec.Concurrency, o.spec.Tenants, runtime.GOMAXPROCS(0))

	results, err := b.ingest(ctx)
	if err != nil {
		return err
	}
	// CPU: ours is paasmeter's (or clickhouse-client's), the server's is
	// known when the bench started it.
	fmt.Fprintf(a.stdout, "%-66s %12s %10s %8s %6s %9s %10s\n", "path", "records/s", "elapsed", "new", "dups", "CPU ours", "CPU server")
	for _, r := range results {
		server := "-"
		if r.server >= 0 {
			server = r.server.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(a.stdout, "%-66s %12.0f %10s %8d %6d %9s %10s\n", r.name, r.res.PerSecond(), r.res.Elapsed.Round(time.Millisecond),
			r.res.New, r.res.Duplicates, r.ours.Round(10*time.Millisecond), server)
	}
	client, viaHTTP, direct := results[0].res, results[1].res, results[2].res
	fmt.Fprintf(a.stdout, "ratio http/clickhouse-client: %.2f   direct/clickhouse-client: %.2f\n",
		viaHTTP.PerSecond()/client.PerSecond(), direct.PerSecond()/client.PerSecond())
	if direct.New != o.spec.Records || viaHTTP.New != o.spec.Records {
		return fmt.Errorf("expected %d new records in each phase, got %d (direct) and %d (http)", o.spec.Records, direct.New, viaHTTP.New)
	}

	line, err := b.monthQuery(ctx)
	if err != nil {
		return fmt.Errorf("query phase: %w", err)
	}
	fmt.Fprintln(a.stdout, line)
	return nil
}

// phase creates a fresh database for the phase name and opens the store in
// it. end closes the store and drops the database (unless --keep), so that
// the merges of one phase's parts do not eat into the next phase's CPU.
func (b *chBench) phase(ctx context.Context, name string) (store *clickhouse.Store, db string, end func() error, err error) {
	db = b.dsn.Database + "_" + name
	if _, err := b.cli.run(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return nil, "", nil, err
	}
	store, err = clickhouse.Open(ctx, strings.Replace(b.o.dsn, "/"+b.dsn.Database, "/"+db, 1), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s phase: %w", name, err)
	}
	return store, db, func() error {
		err := store.Close()
		if !b.o.keepDatabases {
			_, dropErr := b.cli.run(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+db)
			err = errors.Join(err, dropErr)
		}
		return err
	}, nil
}

type benchResult struct {
	name string
	res  loadgen.Result
	// ours and server are the CPU time the phase took in paasmeter (or
	// clickhouse-client) and in the server (-1: unknown).
	ours, server time.Duration
}

// cpu returns the CPU time used so far by this process and by the server
// (-1 when the bench did not start it).
func (b *chBench) cpu() (self, server time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	server = -1
	if b.serverPid > 0 {
		server = processCPU(b.serverPid)
	}
	return self, server
}

// processCPU reads a process's user and system time from /proc, in clock
// ticks of 1/100 s (USER_HZ on Linux); -1 when it cannot.
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name, which is in parentheses: utime and
	// stime are the 14th and 15th of the line, the 12th and 13th after it.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// measure runs phase and returns its result with the CPU time it took.
func (b *chBench) measure(name string, phase func() (loadgen.Result, error)) (benchResult, error) {
	self0, server0 := b.cpu()
	res, err := phase()
	self1, server1 := b.cpu()
	r := benchResult{name: name, res: res, ours: self1 - self0, server: -1}
	if server0 >= 0 && server1 >= 0 {
		r.server = server1 - server0
	}
	return r, err
}

// profiled runs phase under the CPU profiler, writing the profile to path;
// without a path it only runs phase.
func profiled(path string, phase func() (loadgen.Result, error)) (loadgen.Result, error) {
	if path == "" {
		return phase()
	}
	f, err := os.Create(path)
	if err != nil {
		return loadgen.Result{}, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return loadgen.Result{}, errors.Join(err, f.Close())
	}
	res, err := phase()
	pprof.StopCPUProfile()
	return res, errors.Join(err, f.Close())
}

// ingest runs the three ingest phases on the same records: clickhouse-client
// from a file, a collector over HTTP, and direct appends (last: its many
// small inserts leave the server the most merging to do).
func (b *chBench) ingest(ctx context.Context) ([]benchResult, error) {
	spec := b.o.spec
	spec.End = time.Now()
	batches := loadgen.Batches(spec)
	// The agents' bodies carry no received_at; the other phases stamp one.
	bodies, err := loadgen.Encode(batches)
	if err != nil {
		return nil, err
	}
	receivedAt := time.Now().UTC()
	for _, batch := range batches {
		for i := range batch {
			batch[i].ReceivedAt = receivedAt
		}
	}
	file, err := writeRowBinaryFile(batches)
	if err != nil {
		return nil, err
	}
	defer os.Remove(file)

	_, db, end, err := b.phase(ctx, "client")
	if err != nil {
		return nil, err
	}
	var clientCPU time.Duration
	viaClient, err := b.measure("clickhouse-client: INSERT INTO usage_records … FORMAT RowBinary", func() (loadgen.Result, error) {
		res, cpu, err := b.cli.insertFile(ctx, db, file, spec.Records)
		clientCPU = cpu
		return res, err
	})
	viaClient.ours = clientCPU
	if err := errors.Join(err, end()); err != nil {
		return nil, fmt.Errorf("clickhouse-client phase: %w", err)
	}

	store, _, end, err := b.phase(ctx, "http")
	if err != nil {
		return nil, err
	}
	batch := batching.DefaultConfig()
	stop, url, token, err := startBenchCollector(ctx, store, &batch, spec)
	if err != nil {
		return nil, errors.Join(err, end())
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: spec.Concurrency}}
	// Ours is the collector's and the load driver's: one process.
	viaHTTP, err := b.measure("http: POST /api/v1/usage via a collector, batching writer", func() (loadgen.Result, error) {
		return profiled(b.o.cpuProfile, func() (loadgen.Result, error) {
			return loadgen.HTTP(ctx, client, url, token, bodies, spec.Concurrency)
		})
	})
	stop()
	if err := errors.Join(err, end()); err != nil {
		return nil, fmt.Errorf("http phase: %w", err)
	}

	if store, _, end, err = b.phase(ctx, "direct"); err != nil {
		return nil, err
	}
	direct, err := b.measure("direct: AppendUsage into the ClickHouse store (no HTTP)", func() (loadgen.Result, error) {
		return loadgen.Direct(ctx, store, batches, spec.Concurrency, receivedAt)
	})
	if err := errors.Join(err, end()); err != nil {
		return nil, fmt.Errorf("direct phase: %w", err)
	}
	return []benchResult{viaClient, viaHTTP, direct}, nil
}

// monthQuery loads queryRecords records of one month through
// clickhouse-client, then times the month-of-usage query of every
// institution and checks its sums.
func (b *chBench) monthQuery(ctx context.Context) (line string, err error) {
	store, db, end, err := b.phase(ctx, "query")
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, end()) }()
	// The month before this one: the records go back about a week (1,000
	// containers, one record a minute each) from its 20th.
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month()-1, 1, 0, 0, 0, 0, time.UTC)
	spec := b.o.spec
	spec.Records, spec.End = b.o.queryRecords, month.AddDate(0, 0, 19)
	want := map[string]int64{}
	load := time.Now()
	record := spec.Generator()
	err = b.cli.insert(ctx, db, func(w *bufio.Writer) error {
		for i := range spec.Records {
			r := record(i)
			if r.WindowStart.Before(month) {
				return fmt.Errorf("--query-records %d do not fit in one month", spec.Records)
			}
			r.ReceivedAt = load
			want[r.Tenant] += r.Quantity
			if err := writeRowBinary(w, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	loaded := time.Since(load)

	start := time.Now()
	var records int64
	for _, tenant := range spec.TenantIDs() {
		rows, err := store.QueryUsage(ctx, metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: tenant, From: month, To: month.AddDate(0, 1, 0)}})
		if err != nil {
			return "", fmt.Errorf("%s: %w", tenant, err)
		}
		if len(rows) != 1 || rows[0].Meter != usage.MeterCPU || rows[0].Quantity.String() != strconv.FormatInt(want[tenant], 10) {
			return "", fmt.Errorf("%s's month is %+v, want %d of %s", tenant, rows, want[tenant], usage.MeterCPU)
		}
		records += rows[0].Records
	}
	took := time.Since(start)
	if records != int64(spec.Records) {
		return "", fmt.Errorf("the month counts %d records, want %d", records, spec.Records)
	}
	return fmt.Sprintf("month-of-usage query (%s), %d institutions, %d records: %s (one QueryUsage per institution, sums exact; loaded by clickhouse-client in %s, not merged)",
		month.Format("2006-01"), spec.Tenants, spec.Records, took.Round(time.Millisecond), loaded.Round(time.Second)), nil
}

// usageColumns are the columns of the store's usage_records table that a row
// carries (metering/clickhouse/schema.go); ver takes its default.
const usageColumns = "id, tenant, project, app, environment, container_id, run_id, volume, node, meter, quantity, " +
	"window_start, window_end, received_at, schema_version"

// writeRowBinary writes r as one RowBinary row of usageColumns.
func writeRowBinary(w *bufio.Writer, r *usage.Record) error {
	id, err := hex.DecodeString(r.ID)
	if err != nil || len(id) != 16 {
		return fmt.Errorf("record id %q is not 16 bytes of hex", r.ID)
	}
	w.Write(id)
	for _, s := range []string{r.Tenant, r.Project, r.App, string(r.Environment), r.ContainerID, r.RunID, r.Volume, r.Node, string(r.Meter)} {
		w.Write(binary.AppendUvarint(nil, uint64(len(s))))
		w.WriteString(s)
	}
	var b [8]byte
	for _, v := range []int64{r.Quantity, r.WindowStart.UnixNano(), r.WindowEnd.UnixNano(), r.ReceivedAt.UnixNano()} {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		w.Write(b[:])
	}
	binary.LittleEndian.PutUint16(b[:2], uint16(r.SchemaVersion))
	_, err = w.Write(b[:2])
	return err
}

// chClient runs clickhouse-client against one server.
type chClient struct {
	program, addr, user, password string
}

func (c chClient) command(ctx context.Context, db, query string) (*exec.Cmd, error) {
	host, port, err := net.SplitHostPort(c.addr)
	if err != nil {
		return nil, err
	}
	args := []string{"--host", host, "--port", port, "--query", query}
	if db != "" {
		args = append(args, "--database", db)
	}
	if c.user != "" {
		args = append(args, "--user", c.user)
	}
	cmd := exec.CommandContext(ctx, c.program, args...)
	if c.password != "" {
		// Kept off the command line, which every user of the machine can read.
		cmd.Env = append(os.Environ(), "CLICKHOUSE_PASSWORD="+c.password)
	}
	return cmd, nil
}

// run runs query and returns what it printed.
func (c chClient) run(ctx context.Context, query string) (string, error) {
	cmd, err := c.command(ctx, "", query)
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("clickhouse-client %q: %w: %s", query, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// merge merges each partition of db.table into one part, as a month's
// parts are merged by the time it is invoiced, and returns how many parts
// are left active. A plain OPTIMIZE … FINAL is not enough: ClickHouse 18.16
// does nothing, and says nothing, when the background merges hold some of
// the parts (a 100M-record load's OPTIMIZE returned in 74 ms with six parts
// left in the month), so it waits for those merges and asks again; it fails
// when three rounds with no merge running left the parts as they were (a
// server short of disk for the merge declines as silently). It returns the
// active parts and the partitions: equal once merged.
func (c chClient) merge(ctx context.Context, db, table string) (parts, partitions int, err error) {
	where := "database = '" + db + "' AND table = '" + table + "'"
	wait := func() error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("merge %s.%s: %w", db, table, ctx.Err())
		case <-time.After(time.Second):
			return nil
		}
	}
	last, idle := "", 0
	for {
		out, err := c.run(ctx, "SELECT partition_id, count() FROM system.parts WHERE active AND "+where+" GROUP BY partition_id HAVING count() > 1")
		if err != nil {
			return 0, 0, err
		}
		if strings.TrimSpace(out) == "" {
			break
		}
		merging, err := c.run(ctx, "SELECT count() FROM system.merges WHERE "+where)
		if err != nil {
			return 0, 0, err
		}
		if strings.TrimSpace(merging) != "0" {
			if err := wait(); err != nil {
				return 0, 0, err
			}
			continue
		}
		if out == last {
			idle++
		} else {
			last, idle = out, 0
		}
		if idle >= 3 {
			return 0, 0, fmt.Errorf("merge %s.%s: OPTIMIZE … FINAL left the parts as they were three times (partition, parts: %s); the server's log says why (free disk?)",
				db, table, strings.Join(strings.Fields(out), " "))
		}
		if idle > 0 {
			if err := wait(); err != nil {
				return 0, 0, err
			}
		}
		for i, id := range strings.Fields(out) {
			if i%2 == 1 {
				continue // the part count
			}
			if _, err := c.run(ctx, "OPTIMIZE TABLE "+db+"."+table+" PARTITION ID '"+id+"' FINAL"); err != nil {
				return 0, 0, err
			}
		}
	}
	out, err := c.run(ctx, "SELECT count(), uniqExact(partition_id) FROM system.parts WHERE active AND "+where)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscan(out, &parts, &partitions); err != nil {
		return 0, 0, fmt.Errorf("merge %s.%s: system.parts answered %q: %w", db, table, out, err)
	}
	return parts, partitions, nil
}

// insertQuery inserts RowBinary rows of usageColumns.
const insertQuery = "INSERT INTO usage_records (" + usageColumns + ") FORMAT RowBinary"

// writeRowBinaryFile writes batches to a temporary RowBinary file and
// returns its path.
func writeRowBinaryFile(batches [][]usage.Record) (string, error) {
	file, err := os.CreateTemp("", "paasmeter-bench-*.rowbinary")
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(file, 1<<20)
	for _, batch := range batches {
		for i := range batch {
			if err := writeRowBinary(w, &batch[i]); err != nil {
				file.Close()
				os.Remove(file.Name())
				return "", err
			}
		}
	}
	if err := errors.Join(w.Flush(), file.Close()); err != nil {
		os.Remove(file.Name())
		return "", err
	}
	return file.Name(), nil
}

// insertFile times clickhouse-client inserting the rows of a RowBinary file
// into db's usage_records, as an operator would load a file, and returns the
// client's own CPU time too.
func (c chClient) insertFile(ctx context.Context, db, path string, rows int) (loadgen.Result, time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return loadgen.Result{}, 0, err
	}
	defer f.Close()
	cmd, err := c.command(ctx, db, insertQuery)
	if err != nil {
		return loadgen.Result{}, 0, err
	}
	cmd.Stdin = f
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return loadgen.Result{}, 0, fmt.Errorf("clickhouse-client: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return loadgen.Result{Records: rows, New: rows, Elapsed: time.Since(start)}, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// insert streams the RowBinary rows that write produces into db's
// usage_records through clickhouse-client's standard input.
func (c chClient) insert(ctx context.Context, db string, write func(*bufio.Writer) error) error {
	cmd, err := c.command(ctx, db, insertQuery)
	if err != nil {
		return err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("clickhouse-client: %w", err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	writeErr := errors.Join(write(w), w.Flush(), in.Close())
	if err := cmd.Wait(); err != nil {
		return errors.Join(fmt.Errorf("clickhouse-client: %w: %s", err, strings.TrimSpace(out.String())), writeErr)
	}
	return writeErr
}

// startThrowawayClickHouse starts program, a clickhouse-server, for one bench
// run: on a free loopback port with its data in a temporary directory, which
// stop removes after stopping it.
func startThrowawayClickHouse(ctx context.Context, program string) (srv *chserver.Server, stop func() error, err error) {
	dir, err := os.MkdirTemp("", "paasmeter-bench-clickhouse-")
	if err != nil {
		return nil, nil, err
	}
	servers, err := chserver.StartCluster(ctx, program, dir, "paasmeter_bench", 1)
	if err != nil {
		return nil, nil, errors.Join(err, os.RemoveAll(dir))
	}
	return servers[0], func() error {
		// SIGTERM, then SIGKILL after 10 s.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return errors.Join(servers[0].Stop(ctx), os.RemoveAll(dir))
	}, nil
}
