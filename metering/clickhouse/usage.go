package clickhouse

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/internal/sqlkit"
	"github.com/paasmeter/paasmeter/usage"
)

// AppendUsage implements metering.UsageAppender. Once the records are
// inserted, it inserts the counts of the new ones into the accepted ledger; if
// that fails, the append fails with the records stored and not counted (see
// the package doc).
func (s *Store) AppendUsage(ctx context.Context, recs []usage.Record) (metering.AppendResult, error) {
	// On a replicated cluster the records and their count in the ledger are
	// inserted first and waited for once, together: an append whose wait
	// fails (a replica down) has counted what it stored, so its retry, which
	// finds the records stored and counts nothing, leaves accepted = stored.
	// The wait comes even when nothing was new, since the retry of an append
	// whose wait failed must not be acknowledged before every replica has
	// what the failed attempt stored.
	res, err := s.appendNew(ctx, appendSpec{
		table: "usage_records", timeCol: "window_start", n: len(recs), hashed: true,
		key: func(i int) (string, string, time.Time, []byte) {
			return recs[i].ID, recs[i].Tenant, recs[i].WindowStart, usage.ContentHash(&recs[i])
		},
		columns: func(c *columns) {
			addColumn(c, "tenant", func(i int) string { return recs[i].Tenant })
			addColumn(c, "project", func(i int) string { return recs[i].Project })
			addColumn(c, "app", func(i int) string { return recs[i].App })
			addColumn(c, "environment", func(i int) string { return string(recs[i].Environment) })
			addColumn(c, "container_id", func(i int) string { return recs[i].ContainerID })
			addColumn(c, "run_id", func(i int) string { return recs[i].RunID })
			addColumn(c, "volume", func(i int) string { return recs[i].Volume })
			addColumn(c, "node", func(i int) string { return recs[i].Node })
			addColumn(c, "meter", func(i int) string { return string(recs[i].Meter) })
			addColumn(c, "quantity", func(i int) int64 { return recs[i].Quantity })
			addColumn(c, "window_start", func(i int) int64 { return recs[i].WindowStart.UnixNano() })
			addColumn(c, "window_end", func(i int) int64 { return recs[i].WindowEnd.UnixNano() })
			addColumn(c, "received_at", func(i int) int64 { return recs[i].ReceivedAt.UnixNano() })
			addColumn(c, "schema_version", func(i int) uint16 { return uint16(recs[i].SchemaVersion) })
		},
	})
	if err != nil {
		return res, err
	}
	if counts := sqlkit.CountAccepted(recs, res.Duplicates); len(counts) > 0 {
		// One small insert per append, beside the records' parts: the
		// SummingMergeTree folds them together as it merges.
		err = insert(ctx, s.unsynced(), "INSERT INTO usage_accepted (tenant, hour, records)", len(counts), func(i int) []any {
			return []any{counts[i].Tenant, counts[i].Hour, uint64(counts[i].Records)}
		})
		if err != nil {
			return metering.AppendResult{}, s.fail("count accepted records in usage_accepted", err)
		}
	}
	if err := s.awaitReplicas(ctx, "usage_records", "usage_accepted"); err != nil {
		return metering.AppendResult{}, err
	}
	return res, nil
}

// AcceptedUsage implements metering.AcceptedReader. The ledger's rows are
// summed at read time: parts not merged yet hold several rows of an hour.
func (s *Store) AcceptedUsage(ctx context.Context, tenant string, from, to time.Time) ([]metering.AcceptedRow, error) {
	var out []metering.AcceptedRow
	err := scan(ctx, s, s.conn, "accepted usage", "SELECT hour, sum(records) FROM usage_accepted WHERE tenant = ? AND hour >= ? AND hour < ? GROUP BY hour ORDER BY hour",
		[]any{tenant, ceilUnix(from), ceilUnix(to)},
		func(rows chdriver.Rows) (metering.AcceptedRow, error) {
			var hour time.Time
			var n uint64
			err := rows.Scan(&hour, &n)
			return metering.AcceptedRow{Hour: hour.UTC(), Records: int64(n)}, err
		},
		func(r metering.AcceptedRow) error { out = append(out, r); return nil })
	return out, err
}

// ceilUnix is t in whole Unix seconds, rounded up: hour is a DateTime, whole
// seconds, so hour >= t and hour < t hold exactly when they hold against the
// next whole second from t, where truncating would admit an hour just before t.
func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// AppendEvents implements metering.EventAppender. On a replicated cluster it
// returns once every replica holds the events, even when none was new, as
// AppendUsage does.
func (s *Store) AppendEvents(ctx context.Context, evs []events.Event) (metering.AppendResult, error) {
	res, err := s.appendNew(ctx, appendSpec{
		table: "events", timeCol: "time", n: len(evs), hashed: true,
		key: func(i int) (string, string, time.Time, []byte) {
			return evs[i].ID, evs[i].Tenant, evs[i].Time, events.ContentHash(&evs[i])
		},
		columns: func(c *columns) {
			addColumn(c, "tenant", func(i int) string { return evs[i].Tenant })
			addColumn(c, "project", func(i int) string { return evs[i].Project })
			addColumn(c, "app", func(i int) string { return evs[i].App })
			addColumn(c, "environment", func(i int) string { return string(evs[i].Environment) })
			addColumn(c, "node", func(i int) string { return evs[i].Node })
			addColumn(c, "container_id", func(i int) string { return evs[i].ContainerID })
			addColumn(c, "run_id", func(i int) string { return evs[i].RunID })
			addColumn(c, "replica", func(i int) string { return evs[i].Replica })
			addColumn(c, "type", func(i int) string { return string(evs[i].Type) })
			addColumn(c, "time", func(i int) int64 { return evs[i].Time.UnixNano() })
			addColumn(c, "exit_code", func(i int) *int32 { // NULL unless a died event
				if evs[i].ExitCode == nil {
					return nil
				}
				code := int32(*evs[i].ExitCode)
				return &code
			})
			addColumn(c, "oom_killed", func(i int) uint8 { return boolByte(evs[i].OOMKilled) })
			addColumn(c, "initiator", func(i int) string { return string(evs[i].Initiator) })
			addColumn(c, "health", func(i int) string { return evs[i].Health })
			// The probe's columns are NULL or empty unless a probe event.
			addColumn(c, "probe_ok", func(i int) *uint8 {
				if evs[i].Probe == nil {
					return nil
				}
				ok := boolByte(evs[i].Probe.OK)
				return &ok
			})
			addColumn(c, "probe_kind", func(i int) string {
				if evs[i].Probe == nil {
					return ""
				}
				return evs[i].Probe.Kind
			})
			addColumn(c, "probe_latency_ns", func(i int) *int64 {
				if evs[i].Probe == nil {
					return nil
				}
				return &evs[i].Probe.LatencyNs
			})
			addColumn(c, "probe_detail", func(i int) string {
				if evs[i].Probe == nil {
					return ""
				}
				return evs[i].Probe.Detail
			})
			addColumn(c, "received_at", func(i int) int64 { return evs[i].ReceivedAt.UnixNano() })
			addColumn(c, "schema_version", func(i int) uint16 { return uint16(evs[i].SchemaVersion) })
		},
	})
	if err != nil {
		return res, err
	}
	if err := s.awaitReplicas(ctx, "events"); err != nil {
		return metering.AppendResult{}, err
	}
	return res, nil
}

// RunNode implements metering.RunReader. Events are not sorted by run: the
// lookup reads the tenant's run_id column, which the collector does only for
// the rare platform-initiated events.
func (s *Store) RunNode(ctx context.Context, tenant, containerID, runID string) (string, bool, error) {
	var node string
	found := false
	err := scan(ctx, s, s.conn, "node of run "+runID,
		"SELECT node FROM events FINAL WHERE tenant = ? AND run_id = ? AND container_id = ? ORDER BY time, id LIMIT 1",
		[]any{tenant, runID, containerID},
		func(rows chdriver.Rows) (string, error) { var n string; err := rows.Scan(&n); return n, err },
		func(n string) error { node, found = n, true; return nil })
	return node, found, err
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// appendSpec describes one append for appendNew.
type appendSpec struct {
	// table is where the rows go; timeCol is its time column, the second of
	// its sorting key after tenant.
	table, timeCol string
	// hashed says the table has a content column (key gives its values).
	hashed bool
	n      int
	// key returns the id, tenant, time and content hash of record i.
	key func(i int) (id, tenant string, t time.Time, content []byte)
	// columns adds the insert's columns, but for id and content (appendNew
	// adds those), with the values of the records at c.rows.
	columns func(c *columns)
}

// fixed16 is the value of a FixedString(16) column: an id or a content hash.
// As an array it is a map key and a slice of a batch's ids without an
// allocation for each.
type fixed16 [16]byte

// appendNew inserts the records of a that are neither repeated earlier in the
// batch nor stored already, and reports the others as duplicates, and as
// conflicts those whose content hash differs from the first arrival's (a row
// stored before the content column has a zero hash, and is compared with
// nothing).
//
// The check looks up the batch's ids within its tenants and time range, which
// the sorting key narrows to a few granules. It cannot see a concurrent
// append's insert: two appends of one record at the same moment may both
// insert it, and the reads' FINAL keeps the first arrival.
func (s *Store) appendNew(ctx context.Context, a appendSpec) (metering.AppendResult, error) {
	var res metering.AppendResult
	if s.closed.Load() {
		return res, metering.ErrNotReady
	}
	if a.n == 0 {
		return res, nil
	}
	ids, contents := make([]fixed16, a.n), make([]fixed16, a.n)
	// repeated marks the records whose id came earlier in the batch.
	repeated := make([]bool, a.n)
	// first holds the content hash of each id's first record in the batch.
	first := make(map[fixed16]fixed16, a.n)
	var tenants []string
	// seen holds the batch's tenants: a batch of 50,000 records holds many.
	seen := map[string]bool{}
	var from, to int64
	for i := range a.n {
		hexID, tenant, t, content := a.key(i)
		id, err := sqlkit.DecodeID(hexID)
		if err != nil {
			return res, fmt.Errorf("clickhouse store: record %d: %w", i, err)
		}
		copy(ids[i][:], id)
		copy(contents[i][:], content)
		if _, ok := first[ids[i]]; ok {
			repeated[i] = true
			continue
		}
		first[ids[i]] = contents[i]
		if !seen[tenant] {
			seen[tenant] = true
			tenants = append(tenants, tenant)
		}
		if ns := t.UnixNano(); len(first) == 1 {
			from, to = ns, ns
		} else {
			from, to = min(from, ns), max(to, ns)
		}
	}
	stored, err := s.storedIDs(ctx, a, ids, repeated, tenants, from, to)
	if err != nil {
		return metering.AppendResult{}, err
	}
	fresh := make([]int, 0, a.n)
	for i, id := range ids {
		was, isStored := stored[id]
		if !isStored && repeated[i] {
			was, isStored = first[id], true
		}
		if !isStored {
			fresh = append(fresh, i)
			continue
		}
		res.Duplicates = append(res.Duplicates, i)
		if was != noContent && was != contents[i] {
			res.Conflicts = append(res.Conflicts, i)
		}
	}
	if len(fresh) == 0 {
		return res, nil
	}
	c := &columns{rows: fresh}
	addColumn(c, "id", func(i int) []byte { return ids[i][:] })
	if a.hashed {
		addColumn(c, "content", func(i int) []byte { return contents[i][:] })
	}
	a.columns(c)
	// Without the replicas' wait: the caller waits once, after its inserts
	// (awaitReplicas), even when nothing was new.
	if err := insertColumns(ctx, s.unsynced(), a.table, c); err != nil {
		return metering.AppendResult{}, s.fail("insert into "+a.table, err)
	}
	return res, nil
}

// noContent is the content hash of a row stored before rows had one
// (usage.ContentHashLength zero bytes).
var noContent fixed16

// storedIDs returns which of ids (but the repeated ones) are stored in
// a.table, with the content hash of each one's first arrival. The ids travel
// as an external table (sent with the query, and on to the shards), which
// keeps a batch of 10,000 ids out of the query text and its size limit.
func (s *Store) storedIDs(ctx context.Context, a appendSpec, ids []fixed16, repeated []bool, tenants []string, from, to int64) (map[fixed16]fixed16, error) {
	tbl, err := ext.NewTable("paasmeter_ids", ext.Column("id", "FixedString(16)"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse store: %w", err)
	}
	unique := make([][]byte, 0, len(ids))
	for i := range ids {
		if !repeated[i] {
			unique = append(unique, ids[i][:])
		}
	}
	if _, err := tbl.Block().Columns[0].Append(unique); err != nil {
		return nil, fmt.Errorf("clickhouse store: %w", err)
	}
	content := "''" // compared with the batch's empty hashes: never a conflict
	if a.hashed {
		content = "argMax(content, ver)" // the first arrival's
	}
	rows, err := s.conn.Query(ch.Context(ctx, ch.WithExternalTable(tbl)),
		"SELECT id, "+content+" FROM "+a.table+" WHERE tenant IN ("+placeholders(len(tenants))+") AND "+
			a.timeCol+" >= ? AND "+a.timeCol+" <= ? AND id IN paasmeter_ids GROUP BY id", append(sqlAny(tenants), from, to)...)
	if err != nil {
		return nil, s.fail("look up stored ids in "+a.table, err)
	}
	defer rows.Close()
	stored := map[fixed16]fixed16{}
	for rows.Next() {
		var id, content string
		if err := rows.Scan(&id, &content); err != nil {
			return nil, s.fail("look up stored ids in "+a.table, err)
		}
		var k, v fixed16
		copy(k[:], id)
		copy(v[:], content)
		stored[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("look up stored ids in "+a.table, err)
	}
	return stored, nil
}

// dialect spells the shared usage aggregation for ClickHouse: FINAL keeps one
// row per id, the first arrival, also before parts merge (docs/clickhouse.md
// compares it with the alternatives). ClickHouse's sum(Int64) wraps silently
// past 2^63: the 32-bit halves are summed instead.
var dialect = sqlkit.Dialect{
	From: "usage_records FINAL",
	Day: func(offsetNs int64) string {
		return fmt.Sprintf("intDiv(window_start + %d, %d)", offsetNs, (24 * time.Hour).Nanoseconds())
	},
	Sums: "toUInt64(sum(bitShiftRight(quantity, 32))), toUInt64(sum(bitAnd(quantity, 4294967295))), count()",
}

// QueryUsage implements metering.UsageReader (see sqlkit.QueryUsage).
func (s *Store) QueryUsage(ctx context.Context, q metering.UsageQuery) ([]metering.UsageRow, error) {
	rows, err := sqlkit.QueryUsage(ctx, q, dialect, s.query)
	if err != nil {
		return nil, s.fail("query usage", err)
	}
	return rows, nil
}

func (s *Store) query(ctx context.Context, query string, args ...any) (sqlkit.Rows, error) {
	return s.conn.Query(ctx, query, args...)
}

// ScanUsage implements metering.UsageReader.
func (s *Store) ScanUsage(ctx context.Context, f metering.UsageFilter, fn func(usage.Record) error) error {
	cond, args := sqlkit.UsageWhere(&f)
	return scan(ctx, s, s.conn, "scan usage", `SELECT id, tenant, project, app, environment, container_id, run_id, volume, node,
		meter, quantity, window_start, window_end, received_at, schema_version
		FROM usage_records FINAL WHERE `+cond+` ORDER BY window_start, id`, args, func(rows chdriver.Rows) (usage.Record, error) {
		var r usage.Record
		var id, env, meter string
		var ws, we, ra int64
		var version uint16
		if err := rows.Scan(&id, &r.Tenant, &r.Project, &r.App, &env, &r.ContainerID, &r.RunID, &r.Volume, &r.Node,
			&meter, &r.Quantity, &ws, &we, &ra, &version); err != nil {
			return r, err
		}
		r.ID, r.SchemaVersion = hex.EncodeToString([]byte(id)), int(version)
		r.Environment, r.Meter = usage.Environment(env), usage.Meter(meter)
		r.WindowStart, r.WindowEnd, r.ReceivedAt = time.Unix(0, ws).UTC(), time.Unix(0, we).UTC(), time.Unix(0, ra).UTC()
		return r, nil
	}, fn)
}

// eventColumns are the events table's columns as decodeEvent reads them.
const eventColumns = `id, tenant, project, app, environment, node, container_id, run_id, replica,
	type, time, exit_code, oom_killed, initiator, health, probe_ok, probe_kind, probe_latency_ns, probe_detail,
	received_at, schema_version`

// decodeEvent reads a row of eventColumns, then extra.
func decodeEvent(rows chdriver.Rows, extra ...any) (events.Event, error) {
	var e events.Event
	var id, env, typ, initiator, probeKind, probeDetail string
	var t, recv int64
	var exit *int32
	var oom uint8
	var probeOK *uint8
	var probeLatency *int64
	var version uint16
	if err := rows.Scan(append([]any{&id, &e.Tenant, &e.Project, &e.App, &env, &e.Node, &e.ContainerID, &e.RunID, &e.Replica,
		&typ, &t, &exit, &oom, &initiator, &e.Health, &probeOK, &probeKind, &probeLatency, &probeDetail,
		&recv, &version}, extra...)...); err != nil {
		return e, err
	}
	e.ID, e.Environment, e.Type, e.Initiator = hex.EncodeToString([]byte(id)), usage.Environment(env), events.Type(typ), events.Initiator(initiator)
	e.Time, e.ReceivedAt, e.OOMKilled, e.SchemaVersion = time.Unix(0, t).UTC(), time.Unix(0, recv).UTC(), oom == 1, int(version)
	if exit != nil {
		code := int(*exit)
		e.ExitCode = &code
	}
	if probeOK != nil {
		e.Probe = &events.ProbeResult{OK: *probeOK == 1, Kind: probeKind, Detail: probeDetail}
		if probeLatency != nil {
			e.Probe.LatencyNs = *probeLatency
		}
	}
	return e, nil
}

// ScanEvents implements metering.EventReader.
func (s *Store) ScanEvents(ctx context.Context, f metering.EventFilter, fn func(events.Event) error) error {
	cond, args := sqlkit.EventWhere(&f)
	return scan(ctx, s, s.conn, "scan events", `SELECT `+eventColumns+` FROM events FINAL WHERE `+cond+` ORDER BY time, id`, args,
		func(rows chdriver.Rows) (events.Event, error) { return decodeEvent(rows) }, fn)
}

// The SLA report finds the port by a type assertion: this keeps it found.
var _ metering.ProbeRunReader = (*Store)(nil)

// probeRun is an event of ScanProbeRuns with the time of its run's last
// probe result.
type probeRun struct {
	events.Event
	last time.Time
}

// ScanProbeRuns implements metering.ProbeRunReader in two reads of the
// tenant's events. The first groups them per container and UTC day (a run
// is split at midnight, which bounds the arrays a group holds to a day of
// its probes) and finds where each run begins and ends by comparing the
// sorted probe results with themselves shifted by one: 18.16's lambdas
// cannot index an array they capture. The second reads the events again,
// joined with the runs' first probe results, and leaves out the others.
func (s *Store) ScanProbeRuns(ctx context.Context, f metering.EventFilter, gap time.Duration, fn func(events.Event, time.Time) error) error {
	if gap <= 0 {
		return fmt.Errorf("scan probe runs: the gap %s must be positive", gap)
	}
	cond, args := sqlkit.EventWhere(&f)
	result := "(type = '" + string(events.Probe) + "' AND probe_ok IS NOT NULL)"
	lifecycle := "type IN (" + sqlStrings([]events.Type{events.Started, events.Restarted, events.Died, events.Stopped, events.Removed}) + ")"
	shifted := func(a, zero string) string { return "arrayPopBack(arrayPushFront(" + a + ", " + zero + "))" }
	runs := `SELECT r.1 AS id, r.2 AS run_last, toUInt8(1) AS run_first FROM (
		SELECT arraySort(groupArray((time, id, toUInt8(` + lifecycle + `), toUInt8(` + result + `), ifNull(probe_ok, 0)))) AS evs,
			arrayMap(x -> x.4, evs) AS is_result,
			arrayFilter((x, p) -> p, evs, is_result) AS res,
			arrayFilter((g, p) -> p, arrayCumSum(arrayMap(x -> x.3, evs)), is_result) AS g,
			arrayMap(x -> x.1, res) AS t, arrayMap(x -> x.2, res) AS i, arrayMap(x -> x.5, res) AS o,
			arrayMap((n, t1, t0, o1, o0, g1, g0) -> n = 1 OR o1 != o0 OR g1 != g0 OR t1 - t0 > ` + strconv.FormatInt(gap.Nanoseconds(), 10) + `,
				arrayEnumerate(t), t, ` + shifted("t", "toInt64(0)") + `, o, ` + shifted("o", "toUInt8(0)") + `, g, ` + shifted("g", "toUInt64(0)") + `) AS starts
		FROM events FINAL WHERE ` + cond + `
		GROUP BY project, app, container_id, intDiv(time, ` + strconv.FormatInt((24*time.Hour).Nanoseconds(), 10) + `))
		ARRAY JOIN arrayMap((a, b) -> (a, b), arrayFilter((x, st) -> st, i, starts),
			arrayFilter((x, e) -> e, t, arrayPopFront(arrayPushBack(starts, toUInt8(1))))) AS r`
	query := `SELECT ` + eventColumns + `, run_last, run_first FROM (SELECT ` + eventColumns + ` FROM events FINAL WHERE ` + cond + `)
		ANY LEFT JOIN (` + runs + `) USING id
		WHERE run_first = 1 OR NOT ` + result + ` ORDER BY time, id`
	return scan(ctx, s, s.conn, "scan probe runs", query, append(append([]any{}, args...), args...),
		func(rows chdriver.Rows) (probeRun, error) {
			var last int64
			var first uint8
			e, err := decodeEvent(rows, &last, &first)
			r := probeRun{Event: e, last: e.Time}
			if first == 1 {
				r.last = time.Unix(0, last).UTC()
			}
			return r, err
		},
		func(r probeRun) error { return fn(r.Event, r.last) })
}

// scan runs query on conn, decodes every row and passes it to fn. fn's error stops
// the scan and is returned as it is.
func scan[T any](ctx context.Context, s *Store, conn chdriver.Conn, op, query string, args []any, decode func(chdriver.Rows) (T, error), fn func(T) error) error {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return s.fail(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := decode(rows)
		if err != nil {
			return s.fail(op, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.fail(op, err)
	}
	return nil
}
