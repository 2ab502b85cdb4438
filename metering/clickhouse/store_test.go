package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/metering/storetest"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

func records(tenant string, n int, start time.Time, recv time.Time) []usage.Record {
	out := make([]usage.Record, n)
	for i := range out {
		out[i] = usagetest.Record(tenant, fmt.Sprintf("c%04d", i), usage.MeterCPU, start, int64(i+1))
		out[i].ReceivedAt = recv
	}
	return out
}

func scanAll(t *testing.T, s metering.Store, tenant string) []usage.Record {
	t.Helper()
	var out []usage.Record
	err := s.ScanUsage(context.Background(), metering.UsageFilter{Tenant: tenant, From: storetest.Base.AddDate(-1, 0, 0), To: storetest.Base.AddDate(1, 0, 0)},
		func(r usage.Record) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// count runs a count query on one server directly.
func count(t *testing.T, addr, query string) uint64 {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s on %s: %v", query, addr, err)
	}
	return n
}

func database(dsn string) string {
	db := dsn[strings.LastIndex(dsn, "/")+1:]
	db, _, _ = strings.Cut(db, "?")
	return db
}

func TestClusterKeepsEachTenantOnOneShardAndAcknowledgesOnlyStoredRows(t *testing.T) {
	cluster := chtest.TwoShards(t)
	dsn := cluster.DSN(t)
	s, err := clickhouse.Open(context.Background(), dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const tenants, each = 8, 50
	for i := range tenants {
		if _, err := s.AppendUsage(context.Background(), records(fmt.Sprintf("tenant-%d", i), each, storetest.Base, storetest.Base.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	// Read on the shards right after the acknowledgements: a Distributed
	// insert that only queued the rows would show fewer here.
	var total uint64
	for _, shard := range cluster.Servers {
		local := database(dsn) + ".usage_records_local"
		rows := count(t, shard.Addr(), "SELECT count() FROM "+local)
		split := count(t, shard.Addr(), fmt.Sprintf("SELECT count() FROM (SELECT tenant FROM %s GROUP BY tenant HAVING count() != %d)", local, each))
		if rows == 0 || split != 0 {
			t.Errorf("shard %s holds %d rows, %d tenants partly: want some, each tenant whole", shard.Addr(), rows, split)
		}
		total += rows
	}
	if total != tenants*each {
		t.Fatalf("the shards hold %d rows, want %d", total, tenants*each)
	}
}

func TestRacingDuplicatesReadOnceAsTheirFirstArrival(t *testing.T) {
	for name, target := range map[string]dsner{"single server": chtest.Single(t), "two shards": chtest.TwoShards(t), "replicated": chtest.Replicated(t)} {
		t.Run(name, func(t *testing.T) {
			s := open(t, target)
			defer s.Close()
			// Eight collectors receive the same batch at once, each at its own time.
			const collectors, n = 8, 500
			reportedNew := make([][]bool, collectors)
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, collectors)
			for c := range collectors {
				wg.Go(func() {
					recs := records("caami", n, storetest.Base, storetest.Base.Add(time.Duration(c+1)*time.Second))
					<-start
					res, err := s.AppendUsage(context.Background(), recs)
					if err != nil {
						errs <- err
						return
					}
					reportedNew[c] = make([]bool, n)
					for i := range n {
						reportedNew[c][i] = !slices.Contains(res.Duplicates, i)
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			got := scanAll(t, s, "caami")
			if len(got) != n {
				t.Fatalf("read %d records, want %d", len(got), n)
			}
			raced, reported := 0, 0
			for _, r := range got {
				var i int
				fmt.Sscanf(r.ContainerID, "c%04d", &i)
				// The record read is the earliest of the copies inserted, and
				// whoever inserted a copy was told it was new.
				first, inserted := -1, 0
				for c := range collectors {
					if reportedNew[c][i] {
						inserted++
						if first < 0 {
							first = c
						}
					}
				}
				if inserted > 1 {
					raced++
				}
				reported += inserted
				if want := storetest.Base.Add(time.Duration(first+1) * time.Second); first < 0 || !r.ReceivedAt.Equal(want) {
					t.Fatalf("record %d reads as received at %s; the first copy inserted was collector %d's", i, r.ReceivedAt, first)
				}
			}
			rows, err := s.QueryUsage(context.Background(), metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: "caami", From: storetest.Base, To: storetest.Base.Add(time.Hour)}})
			if err != nil || len(rows) != 1 || rows[0].Records != n || rows[0].Quantity.String() != fmt.Sprint(n*(n+1)/2) {
				t.Fatalf("QueryUsage = %+v, %v; want %d records totalling %d", rows, err, n, n*(n+1)/2)
			}
			// The ledger counts every copy reported new: at least every record,
			// more where the collectors raced (accepted ≥ stored).
			acc, err := s.AcceptedUsage(context.Background(), "caami", storetest.Base, storetest.Base.Add(time.Hour))
			if err != nil || len(acc) != 1 || acc[0].Records != int64(reported) {
				t.Fatalf("AcceptedUsage = %+v, %v; want one hour of the %d records reported new", acc, err, reported)
			}
			t.Logf("%d of %d records were inserted by more than one collector, and read once; the ledger accepted %d", raced, n, reported)
		})
	}
}

func TestDropMonthsBefore(t *testing.T) {
	for name, target := range map[string]dsner{"single server": chtest.Single(t), "two shards": chtest.TwoShards(t), "replicated": chtest.Replicated(t)} {
		t.Run(name, func(t *testing.T) {
			s := open(t, target)
			defer s.Close()
			ctx := context.Background()
			september := storetest.Base.AddDate(0, -1, 0)
			for _, tenant := range []string{"caami", "ona", "rva", "inami"} {
				for _, month := range []time.Time{september, storetest.Base} {
					if _, err := s.AppendUsage(ctx, records(tenant, 3, month, month.Add(time.Hour))); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The end of September is not past the horizon yet.
			if dropped, err := s.DropMonthsBefore(ctx, storetest.Base.Add(-time.Second)); err != nil || len(dropped) != 0 {
				t.Fatalf("DropMonthsBefore(Sept 30) = %q, %v; want nothing dropped", dropped, err)
			}
			dropped, err := s.DropMonthsBefore(ctx, storetest.Base)
			if err != nil || !slices.Equal(dropped, []string{"usage_accepted 202609", "usage_records 202609"}) {
				t.Fatalf("DropMonthsBefore(Oct 1) = %q, %v; want September's usage and accepted-ledger partitions", dropped, err)
			}
			for _, tenant := range []string{"caami", "ona", "rva", "inami"} {
				got := scanAll(t, s, tenant)
				if len(got) != 3 || !got[0].WindowStart.Equal(storetest.Base) {
					t.Fatalf("%s keeps %d records, want October's 3", tenant, len(got))
				}
				// The ledger keeps what the records keep, so the two still reconcile.
				acc, err := s.AcceptedUsage(ctx, tenant, september, storetest.Base.AddDate(0, 1, 0))
				if err != nil || !slices.Equal(acc, []metering.AcceptedRow{{Hour: storetest.Base, Records: 3}}) {
					t.Fatalf("%s's ledger after the drop = %+v, %v; want October's 3 records", tenant, acc, err)
				}
			}
		})
	}
}

func TestKilledServerIsNotReadyThenRecoversWithItsData(t *testing.T) {
	server := chtest.Start(t)
	s := open(t, server)
	defer s.Close()
	ctx := context.Background()
	before := records("caami", 10, storetest.Base, storetest.Base.Add(time.Hour))
	if _, err := s.AppendUsage(ctx, before); err != nil {
		t.Fatal(err)
	}
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); !errors.Is(err, metering.ErrNotReady) {
		t.Fatalf("Ready with the server killed = %v, want ErrNotReady", err)
	}
	after := records("ona", 10, storetest.Base, storetest.Base.Add(time.Hour))
	if _, err := s.AppendUsage(ctx, after); !errors.Is(err, metering.ErrNotReady) {
		t.Fatalf("AppendUsage with the server killed = %v, want an error that wraps ErrNotReady", err)
	}
	if err := server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready after the restart: %v", err)
	}
	if _, err := s.AppendUsage(ctx, after); err != nil {
		t.Fatalf("AppendUsage after the restart: %v", err)
	}
	if a, b := len(scanAll(t, s, "caami")), len(scanAll(t, s, "ona")); a != 10 || b != 10 {
		t.Fatalf("after the restart: %d and %d records, want 10 and 10", a, b)
	}
}

func TestParseDSN(t *testing.T) {
	good := map[string]func(*clickhouse.DSN) bool{
		"clickhouse://127.0.0.1:9000/paasmeter": func(d *clickhouse.DSN) bool { return d.Database == "paasmeter" && d.Cluster == "" },
		"clickhouse://u:p@ch1:9000,ch2:9000/metering?cluster=platform&dial_timeout=2s": func(d *clickhouse.DSN) bool {
			return d.Cluster == "platform" && len(d.Options.Addr) == 2 && d.Options.Auth.Username == "u" &&
				d.Options.Settings["insert_distributed_sync"] == 1 && d.Options.DialTimeout == 2*time.Second
		},
		"clickhouse://ch1:9000,ch2:9000/metering?cluster=platform&replicated=true": func(d *clickhouse.DSN) bool {
			return d.Cluster == "platform" && d.Replicated && d.Options.Settings["insert_distributed_sync"] == 1 &&
				d.Options.Settings["insert_deduplicate"] == 0 && d.Options.Settings["replication_alter_partitions_sync"] == 2
		},
	}
	for dsn, ok := range good {
		d, err := clickhouse.ParseDSN(dsn)
		if err != nil || !ok(d) {
			t.Errorf("ParseDSN(%q) = %+v, %v", dsn, d, err)
		}
	}
	bad := map[string]string{
		"http://127.0.0.1:8123/paasmeter":                "native protocol",
		"clickhouse://127.0.0.1:9000":                    "database",
		"clickhouse://127.0.0.1:9000/pa-as":              "database",
		"clickhouse:///paasmeter":                        "host:port",
		"clickhouse://h:9000/db?cluster=a;DROP":          "semicolon",
		"clickhouse://h:9000/db?cluster=a-b":             "cluster",
		"clickhouse://h:9000/db?dial_timeout=forever":    "dial timeout",
		"clickhouse://h:9000/db?replicated=true":         "needs cluster",
		"clickhouse://h:9000/db?cluster=a&replicated=2x": "replicated",
	}
	for dsn, want := range bad {
		if _, err := clickhouse.ParseDSN(dsn); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDSN(%q) = %v, want an error about %s", dsn, err, want)
		}
	}
}
