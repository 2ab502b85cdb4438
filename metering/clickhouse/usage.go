package clickhouse

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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
	res, err := s.appendNew(ctx, appendSpec{
		table: "usage_records", timeCol: "window_start", n: len(recs), hashed: true,
		columns: "id, content, tenant, project, app, environment, container_id, run_id, volume, node, meter, quantity, " +
			"window_start, window_end, received_at, schema_version",
		key: func(i int) (string, string, time.Time, []byte) {
			return recs[i].ID, recs[i].Tenant, recs[i].WindowStart, usage.ContentHash(&recs[i])
		},
		row: func(i int, id, content string) []any {
			r := &recs[i]
			return []any{id, content, r.Tenant, r.Project, r.App, string(r.Environment), r.ContainerID, r.RunID, r.Volume, r.Node,
				string(r.Meter), r.Quantity, r.WindowStart.UnixNano(), r.WindowEnd.UnixNano(), r.ReceivedAt.UnixNano(),
				uint16(r.SchemaVersion)}
		},
	})
	if err != nil {
		return res, err
	}
	counts := sqlkit.CountAccepted(recs, res.Duplicates)
	if len(counts) == 0 {
		return res, nil
	}
	// One small insert per append, beside the records' parts: the
	// SummingMergeTree folds them together as it merges.
	err = insert(ctx, s.conn, "INSERT INTO usage_accepted (tenant, hour, records)", len(counts), func(i int) []any {
		return []any{counts[i].Tenant, counts[i].Hour, uint64(counts[i].Records)}
	})
	if err != nil {
		return metering.AppendResult{}, s.fail("count accepted records in usage_accepted", err)
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

// AppendEvents implements metering.EventAppender.
func (s *Store) AppendEvents(ctx context.Context, evs []events.Event) (metering.AppendResult, error) {
	return s.appendNew(ctx, appendSpec{
		table: "events", timeCol: "time", n: len(evs), hashed: true,
		columns: "id, content, tenant, project, app, environment, node, container_id, run_id, replica, type, time, exit_code, " +
			"oom_killed, initiator, health, probe_ok, probe_kind, probe_latency_ns, probe_detail, received_at, schema_version",
		key: func(i int) (string, string, time.Time, []byte) {
			return evs[i].ID, evs[i].Tenant, evs[i].Time, events.ContentHash(&evs[i])
		},
		row: func(i int, id, content string) []any {
			e := &evs[i]
			var exit *int32 // NULL unless a died event
			if e.ExitCode != nil {
				code := int32(*e.ExitCode)
				exit = &code
			}
			var probeOK *uint8 // NULL unless a probe event
			var probeLatency *int64
			var probeKind, probeDetail string
			if p := e.Probe; p != nil {
				ok := boolByte(p.OK)
				probeOK, probeLatency, probeKind, probeDetail = &ok, &p.LatencyNs, p.Kind, p.Detail
			}
			return []any{id, content, e.Tenant, e.Project, e.App, string(e.Environment), e.Node, e.ContainerID, e.RunID, e.Replica,
				string(e.Type), e.Time.UnixNano(), exit, boolByte(e.OOMKilled), string(e.Initiator), e.Health, probeOK,
				probeKind, probeLatency, probeDetail, e.ReceivedAt.UnixNano(), uint16(e.SchemaVersion)}
		},
	})
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
	// columns are the insert's columns, in the order row gives them.
	columns string
	// hashed says the table has a content column (key gives its values).
	hashed bool
	n      int
	// key returns the id, tenant, time and content hash of record i.
	key func(i int) (id, tenant string, t time.Time, content []byte)
	// row returns the values of record i; id and content are its id and
	// content hash as the 16 bytes of their columns.
	row func(i int, id, content string) []any
}

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
	ids, contents := make([]string, a.n), make([]string, a.n)
	// repeated marks the records whose id came earlier in the batch.
	repeated := make([]bool, a.n)
	// first holds the content hash of each id's first record in the batch.
	first := make(map[string]string, a.n)
	var tenants []string
	var from, to int64
	for i := range a.n {
		hexID, tenant, t, content := a.key(i)
		id, err := sqlkit.DecodeID(hexID)
		if err != nil {
			return res, fmt.Errorf("clickhouse store: record %d: %w", i, err)
		}
		ids[i], contents[i] = string(id), string(content)
		if _, ok := first[ids[i]]; ok {
			repeated[i] = true
			continue
		}
		first[ids[i]] = contents[i]
		if !slices.Contains(tenants, tenant) {
			tenants = append(tenants, tenant)
		}
		if ns := t.UnixNano(); len(first) == 1 {
			from, to = ns, ns
		} else {
			from, to = min(from, ns), max(to, ns)
		}
	}
	if a.n == 0 {
		return res, nil
	}
	stored, err := s.storedIDs(ctx, a, first, tenants, from, to)
	if err != nil {
		return metering.AppendResult{}, err
	}
	var fresh []int
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
	err = insert(ctx, s.conn, "INSERT INTO "+a.table+" ("+a.columns+")", len(fresh), func(j int) []any {
		return a.row(fresh[j], ids[fresh[j]], contents[fresh[j]])
	})
	if err != nil {
		return metering.AppendResult{}, s.fail("insert into "+a.table, err)
	}
	return res, nil
}

// noContent is the content hash of a row stored before rows had one.
const noContent = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" // usage.ContentHashLength zero bytes

// storedIDs returns which of ids are stored in a.table, with the content hash
// of each one's first arrival. The ids travel as an
// external table (sent with the query, and on to the shards), which keeps a
// batch of 10,000 ids out of the query text and its size limit.
func (s *Store) storedIDs(ctx context.Context, a appendSpec, ids map[string]string, tenants []string, from, to int64) (map[string]string, error) {
	tbl, err := ext.NewTable("paasmeter_ids", ext.Column("id", "FixedString(16)"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse store: %w", err)
	}
	for id := range ids {
		if err := tbl.Append(id); err != nil {
			return nil, fmt.Errorf("clickhouse store: %w", err)
		}
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
	stored := map[string]string{}
	for rows.Next() {
		var id, content string
		if err := rows.Scan(&id, &content); err != nil {
			return nil, s.fail("look up stored ids in "+a.table, err)
		}
		stored[id] = content
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("look up stored ids in "+a.table, err)
	}
	return stored, nil
}

// insert sends n rows, row(i) giving row i, as one batch (one block). 18.16
// takes inserts no other way from clickhouse-go: an INSERT … VALUES through
// Exec hangs, and a batch must name its columns.
func insert(ctx context.Context, conn chdriver.Conn, query string, n int, row func(i int) []any) error {
	b, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	for i := range n {
		if err := b.Append(row(i)...); err != nil {
			return errors.Join(fmt.Errorf("row %d: %w", i, err), b.Abort())
		}
	}
	return b.Send()
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

// ScanEvents implements metering.EventReader.
func (s *Store) ScanEvents(ctx context.Context, f metering.EventFilter, fn func(events.Event) error) error {
	cond, args := sqlkit.EventWhere(&f)
	return scan(ctx, s, s.conn, "scan events", `SELECT id, tenant, project, app, environment, node, container_id, run_id, replica,
		type, time, exit_code, oom_killed, initiator, health, probe_ok, probe_kind, probe_latency_ns, probe_detail,
		received_at, schema_version FROM events FINAL WHERE `+cond+` ORDER BY time, id`, args, func(rows chdriver.Rows) (events.Event, error) {
		var e events.Event
		var id, env, typ, initiator, probeKind, probeDetail string
		var t, recv int64
		var exit *int32
		var oom uint8
		var probeOK *uint8
		var probeLatency *int64
		var version uint16
		if err := rows.Scan(&id, &e.Tenant, &e.Project, &e.App, &env, &e.Node, &e.ContainerID, &e.RunID, &e.Replica,
			&typ, &t, &exit, &oom, &initiator, &e.Health, &probeOK, &probeKind, &probeLatency, &probeDetail,
			&recv, &version); err != nil {
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
	}, fn)
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
