package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/usage"
)

// benchInvoiceClickHouse loads the bench's records into ClickHouse (or finds
// them there), runs the draft over it in a child process and returns the
// draft's result.
func (a *app) benchInvoiceClickHouse(ctx context.Context, o benchInvoiceOptions, loc *time.Location) (_ benchPhaseResult, err error) {
	serverPid := 0
	if o.chDSN == "" {
		srv, stop, err := startThrowawayClickHouse(ctx, o.chServer)
		if err != nil {
			return benchPhaseResult{}, err
		}
		defer func() { err = errors.Join(err, stop()) }()
		o.chDSN, serverPid = srv.DSN(benchInvoiceDatabase), srv.Pid()
	}
	dsn, err := clickhouse.ParseDSN(o.chDSN)
	if err != nil {
		return benchPhaseResult{}, err
	}
	if dsn.Cluster != "" {
		return benchPhaseResult{}, errors.New("bench invoice: it measures one ClickHouse server; leave cluster= out of the DSN")
	}
	cli := chClient{program: o.chClient, addr: dsn.Options.Addr[0], user: dsn.Options.Auth.Username, password: dsn.Options.Auth.Password}
	loadLine, err := a.benchInvoiceLoad(ctx, o, loc, cli, dsn.Database)
	if err != nil {
		return benchPhaseResult{}, err
	}
	version, err := cli.run(ctx, "SELECT version()")
	if err != nil {
		return benchPhaseResult{}, err
	}
	fmt.Fprintf(a.stdout, "invoice benchmark on ClickHouse %s: %d institutions, %d usage records of %04d-%02d (%s); load average %s\n",
		strings.TrimSpace(version), o.institutions, o.records, benchInvoiceYear, int(benchInvoiceMonth), benchInvoiceZone, loadAverage())
	fmt.Fprintln(a.stdout, loadLine)
	fmt.Fprintf(a.stderr, "%s: running…\n", phaseDraftClickHouse)
	serverCPU := processCPU(serverPid)
	res, err := a.benchInvoiceChild(ctx, o, phaseDraftClickHouse)
	if err != nil {
		return benchPhaseResult{}, err
	}
	server := "unknown (not started by the bench)"
	if serverPid > 0 {
		server = (processCPU(serverPid) - serverCPU).Round(10 * time.Millisecond).String()
	}
	fmt.Fprintf(a.stdout, "%-84s %12.0f %10s %9s %5d MiB  (CPU of clickhouse-server: %s)\n",
		fmt.Sprintf("draft over ClickHouse: Service.Draft of %04d-%02d, sums in the server", benchInvoiceYear, int(benchInvoiceMonth)),
		float64(res.Records)/res.Elapsed.Seconds(), res.Elapsed.Round(time.Millisecond), res.cpu.Round(10*time.Millisecond), res.PeakRSS>>20, server)
	fmt.Fprintf(a.stdout, "draft over ClickHouse: %d invoices, %d records billed, sum of payable EUR %s\n", res.Invoices, res.Records, res.Payable)
	if res.Records != int64(o.records) || res.Invoices != o.institutions {
		return res, fmt.Errorf("the draft over ClickHouse billed %d records on %d invoices, want %d on %d", res.Records, res.Invoices, o.records, o.institutions)
	}
	return res, nil
}

// benchInvoiceLoad loads the bench's records into database db through
// clickhouse-client, and merges them as a month's parts are merged by the
// time it is invoiced — unless db holds them already (a marker table says
// what it holds).
func (a *app) benchInvoiceLoad(ctx context.Context, o benchInvoiceOptions, loc *time.Location, cli chClient, db string) (string, error) {
	want, err := json.Marshal(o.marker()) // no quote or backslash: a plain SQL literal
	if err != nil {
		return "", err
	}
	got, markerErr := cli.run(ctx, "SELECT marker FROM "+db+".bench_invoice_marker")
	if markerErr == nil && strings.TrimSpace(got) == string(want) {
		return fmt.Sprintf("load: skipped, database %s holds these records already", db), nil
	}
	// Only a database the bench filled is dropped: a DSN naming a real
	// store's database by mistake must not cost its records.
	if markerErr != nil {
		tables, err := cli.run(ctx, "SELECT count() FROM system.tables WHERE database = '"+db+"'")
		if err != nil {
			return "", err
		}
		if strings.TrimSpace(tables) != "0" {
			return "", fmt.Errorf("database %s has tables but no bench marker: not dropping it; name a database of the bench's own in --clickhouse-dsn", db)
		}
	}
	if _, err := cli.run(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return "", err
	}
	store, err := clickhouse.Open(ctx, o.chDSN, slog.New(slog.DiscardHandler)) // creates the schema
	if err != nil {
		return "", err
	}
	if err := store.Close(); err != nil {
		return "", err
	}
	start, done := time.Now(), 0
	err = cli.insert(ctx, db, func(w *bufio.Writer) error {
		return benchInvoiceRecords(o.institutions, o.records, o.batch, loc, func(b []usage.Record) error {
			for i := range b {
				if err := writeRowBinary(w, &b[i]); err != nil {
					return err
				}
			}
			if done += len(b); done%(10*o.batch) == 0 {
				fmt.Fprintf(a.stderr, "load: %d/%d records, %s\n", done, o.records, time.Since(start).Round(time.Second))
			}
			return nil
		})
	})
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	loaded := time.Since(start)
	start = time.Now()
	parts, partitions, err := cli.merge(ctx, db, "usage_records")
	if err != nil {
		return "", err
	}
	merged := time.Since(start)
	for _, q := range []string{"CREATE TABLE " + db + ".bench_invoice_marker (marker String) ENGINE = TinyLog",
		"INSERT INTO " + db + ".bench_invoice_marker VALUES ('" + string(want) + "')"} {
		if _, err := cli.run(ctx, q); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("load: %d records by clickhouse-client (RowBinary) in %s, merged (OPTIMIZE … FINAL of every partition) in %s: %d parts, %d partitions", done, loaded.Round(time.Millisecond),
		merged.Round(time.Millisecond), parts, partitions), nil
}
