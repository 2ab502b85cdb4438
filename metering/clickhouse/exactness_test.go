package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/metering/storetest"
	"github.com/paasmeter/paasmeter/usage"
)

// exactnessRecordsEnv sets how many records BenchmarkExactness loads; it
// skips without it, because loading takes a while (10,000,000: about 30 s).
const exactnessRecordsEnv = "PAASMETER_BENCH_EXACTNESS_RECORDS"

// BenchmarkExactness measures the ways of reading usage exactly — each id once,
// its first arrival — before and after parts merge, on the store's own
// usage_records table: month totals of one institution (by app, environment
// and meter) and of all of them (by institution and meter). 1 % of the records
// arrive twice, later and with another quantity, as racing collectors would
// store them. Each candidate's grand total is checked against the exact one:
// "exact" is 1 when it matches. docs/clickhouse.md has the numbers.
//
//	PAASMETER_BENCH_EXACTNESS_RECORDS=10000000 go test -run '^$' -bench Exactness -benchtime 5x ./metering/clickhouse/
func BenchmarkExactness(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv(exactnessRecordsEnv))
	if n <= 0 {
		b.Skipf("set %s (e.g. 10000000) to load that many records and compare the exact usage queries", exactnessRecordsEnv)
	}
	ctx := context.Background()
	server := chtest.Single(b)
	dsn := server.DSN(b)
	s, err := clickhouse.Open(ctx, dsn, quiet)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	d, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := ch.Open(&ch.Options{Addr: []string{server.Addr()}, Auth: ch.Auth{Database: d.Database}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string) {
		b.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	// The pre-aggregated candidate: daily sums per group, kept by a
	// materialized view as records are inserted, duplicates included.
	exec(`CREATE MATERIALIZED VIEW usage_daily ENGINE = SummingMergeTree ORDER BY (tenant, day, project, app, environment, meter)
		AS SELECT tenant, intDiv(window_start, 86400000000000) AS day, project, app, environment, meter,
		toUInt64(bitShiftRight(quantity, 32)) AS hi, toUInt64(bitAnd(quantity, 4294967295)) AS lo, toUInt64(1) AS records
		FROM usage_records`)
	// Parts stay as inserted until the "merged" state: the worst case for FINAL.
	exec("SYSTEM STOP MERGES")
	defer conn.Exec(ctx, "SYSTEM START MERGES")
	// 20 institutions, 1,680 containers, every meter, hourly windows from
	// October 2026: 10,000,000 records are a month of all of them.
	const containers, chunk = 1680, 250_000
	meters := make([]string, len(usage.Meters))
	for i, m := range usage.Meters {
		meters[i] = "'" + string(m.Meter) + "'"
	}
	for from := 0; from < n; from += chunk {
		exec(fmt.Sprintf(`INSERT INTO usage_records (id, tenant, project, app, environment, container_id, run_id, volume, node, meter,
			quantity, window_start, window_end, received_at, schema_version)
			SELECT toFixedString(concat(reinterpretAsString(cityHash64(n, 1)), reinterpretAsString(cityHash64(n, 2))), 16),
				concat('tenant', toString(c %% 20)), 'claims', concat('app', toString(c %% 7)), ['prod', 'acc', 'test', 'dev'][c %% 4 + 1],
				concat('c', toString(c)), concat('c', toString(c), '-run1'), '', concat('node-', toString(c %% 10)), [%[1]s][m + 1],
				toInt64(cityHash64(n) %% 20000000000000),
				toInt64(%[2]d + h * 3600) * 1000000000, toInt64(%[2]d + h * 3600 + 3600) * 1000000000,
				toInt64(%[2]d + h * 3600 + 3630) * 1000000000, 1
			FROM (SELECT number + %[3]d AS n, intDiv(n, %[4]d) AS h, n %% %[4]d AS cm, intDiv(cm, %[5]d) AS c, cm %% %[5]d AS m
				FROM numbers(%[6]d))`,
			strings.Join(meters, ", "), storetest.Base.Unix(), from, containers*len(meters), len(meters), min(chunk, n-from)))
	}
	// 1 % arrive again a minute later with another quantity, as they would
	// from two collectors racing.
	exec(`INSERT INTO usage_records (id, tenant, project, app, environment, container_id, run_id, volume, node, meter, quantity,
		window_start, window_end, received_at, schema_version)
		SELECT id, tenant, project, app, environment, container_id, run_id, volume, node, meter, quantity + 1,
			window_start, window_end, received_at + 60000000000, schema_version
		FROM usage_records WHERE cityHash64(id) % 100 = 0`)
	month := fmt.Sprintf("window_start >= %d AND window_start < %d", storetest.Base.UnixNano(), storetest.Base.AddDate(0, 1, 0).UnixNano())
	// The exact total: the month's first arrivals, told apart by their
	// received_at, which the duplicates do not share.
	var want big.Int
	var wantHi, wantLo uint64
	if err := conn.QueryRow(ctx, `SELECT toUInt64(sum(bitShiftRight(quantity, 32))), toUInt64(sum(bitAnd(quantity, 4294967295)))
		FROM usage_records WHERE `+month+` AND received_at = window_end + 30000000000`).Scan(&wantHi, &wantLo); err != nil {
		b.Fatal(err)
	}
	want.Set(usage.FromSplitSums(wantHi, wantLo).Big())

	// Each query gives its groups, then their total as a decimal string
	// (recombined from the sums of 32-bit halves where those are summed,
	// which costs one conversion per group) and their count of records.
	const split = "toString(toDecimal128(sum(bitShiftRight(quantity, 32)), 0) * 4294967296 + toDecimal128(sum(bitAnd(quantity, 4294967295)), 0)), count()"
	candidates := []struct{ name, query string }{
		{"naive sum (keeps duplicates)", "SELECT %[1]s, " + split + " FROM usage_records WHERE %[2]s GROUP BY %[1]s"},
		{"FINAL", "SELECT %[1]s, " + split + " FROM usage_records FINAL WHERE %[2]s GROUP BY %[1]s"},
		{"FINAL, Decimal128 sum", "SELECT %[1]s, toString(sum(toDecimal128(quantity, 0))), count() FROM usage_records FINAL WHERE %[2]s GROUP BY %[1]s"},
		{"argMin(received_at) by id", "SELECT %[1]s, " + split + ` FROM (
			SELECT any(t0) AS tenant, any(a0) AS app, any(e0) AS environment, any(m0) AS meter, argMin(q0, r0) AS quantity
			FROM (SELECT id, tenant AS t0, app AS a0, environment AS e0, meter AS m0, quantity AS q0, received_at AS r0
				FROM usage_records WHERE %[2]s)
			GROUP BY id) GROUP BY %[1]s`},
		{"LIMIT 1 BY id", "SELECT %[1]s, " + split + ` FROM (
			SELECT tenant, app, environment, meter, quantity FROM usage_records WHERE %[2]s ORDER BY id, received_at LIMIT 1 BY id)
			GROUP BY %[1]s`},
		{"pre-aggregated (keeps duplicates)", "SELECT %[1]s, toString(toDecimal128(sum(hi), 0) * 4294967296 + toDecimal128(sum(lo), 0)), " +
			"toUInt64(sum(records)) FROM usage_daily WHERE %[3]s GROUP BY %[1]s"},
	}
	days := fmt.Sprintf("day >= %d AND day < %d", storetest.Base.Unix()/86400, storetest.Base.AddDate(0, 1, 0).Unix()/86400)
	scopes := []struct{ name, group, where string }{
		{"one institution", "app, environment, meter", "tenant = 'tenant3' AND "},
		{"all institutions", "tenant, meter", ""},
	}
	run := func(state string) {
		for _, sc := range scopes {
			for _, c := range candidates {
				query := fmt.Sprintf(c.query, sc.group, sc.where+month, sc.where+days)
				b.Run(state+"/"+sc.name+"/"+c.name, func(b *testing.B) {
					var total big.Int
					for b.Loop() {
						total.SetInt64(0)
						rows, err := conn.Query(ctx, query)
						if err != nil {
							b.Fatalf("%s: %v", query, err)
						}
						groups := len(rows.Columns()) - 2
						for rows.Next() {
							dest := make([]any, groups+2)
							for i := range groups {
								dest[i] = new(string)
							}
							var sum string
							var records uint64
							dest[groups], dest[groups+1] = &sum, &records
							if err := rows.Scan(dest...); err != nil {
								b.Fatal(err)
							}
							v, ok := new(big.Int).SetString(sum, 10)
							if !ok {
								b.Fatalf("total %q", sum)
							}
							total.Add(&total, v)
						}
						if err := errors.Join(rows.Err(), rows.Close()); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
					// One institution's queries are exact when all institutions' are.
					if sc.where == "" {
						exact := 0.0
						if total.Cmp(&want) == 0 {
							exact = 1
						}
						b.ReportMetric(exact, "exact")
					}
				})
			}
		}
	}
	run("as inserted")
	exec("SYSTEM START MERGES")
	exec("OPTIMIZE TABLE usage_records FINAL")
	run("merged")
}
