package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/internal/sqlkit"
)

// streamID is the id of a tenant's stream: 64 bits of SHA-256 over the tenant
// and the stream's key. Within one tenant, a collision needs about 2^32 streams.
func streamID(tenant, key string) uint64 {
	sum := sha256.Sum256([]byte(tenant + "\x00" + key))
	return binary.BigEndian.Uint64(sum[:8])
}

// AppendLogs implements metering.LogAppender. The lines go in first, then a
// row of this append for each of their streams (touchStreams), new or not:
// retention deletes exactly the stream rows it saw without lines, so a row
// written after it looked, by an append whose lines it could not see yet,
// stays (DeleteLogs). A failed append may leave lines without their stream's
// row, which no read shows until the append is sent again. On a replicated
// cluster the rows are written once every replica holds the lines, even when
// none was new (the retry of an append whose wait failed): retention reads a
// shard's first replica, which must not see a row whose lines it lacks.
func (s *Store) AppendLogs(ctx context.Context, lines []logs.Line) (metering.AppendResult, error) {
	if s.closed.Load() {
		return metering.AppendResult{}, metering.ErrNotReady
	}
	streams := make([]uint64, len(lines))
	labels := map[uint64]*logs.Line{}
	for i := range lines {
		if _, err := sqlkit.DecodeID(lines[i].ID); err != nil {
			return metering.AppendResult{}, fmt.Errorf("clickhouse store: line %d: %w", i, err)
		}
		streams[i] = streamID(lines[i].Tenant, logs.StreamKey(lines[i].Labels))
		labels[streams[i]] = &lines[i]
	}
	res, err := s.appendNew(ctx, appendSpec{
		table: "log_lines", timeCol: "time", n: len(lines),
		// A line's id covers its text: no content hash to compare.
		key: func(i int) (string, string, time.Time, []byte) {
			return lines[i].ID, lines[i].Tenant, lines[i].Time, nil
		},
		columns: func(c *columns) {
			addColumn(c, "tenant", func(i int) string { return lines[i].Tenant })
			addColumn(c, "time", func(i int) int64 { return lines[i].Time.UnixNano() })
			addColumn(c, "seq", func(i int) uint32 { return uint32(lines[i].Seq) })
			addColumn(c, "stream", func(i int) uint64 { return streams[i] })
			addColumn(c, "line", func(i int) string { return lines[i].Line })
			addColumn(c, "received_at", func(i int) int64 { return lines[i].ReceivedAt.UnixNano() })
			addColumn(c, "schema_version", func(i int) uint16 { return uint16(lines[i].SchemaVersion) })
		},
	})
	if err != nil {
		return res, err
	}
	if err := s.awaitReplicas(ctx, "log_lines"); err != nil {
		return metering.AppendResult{}, err
	}
	if err := s.touchStreams(ctx, labels); err != nil {
		return metering.AppendResult{}, err
	}
	return res, nil
}

// touchStreams stores a row for each of the streams (by id, each with a line
// that carries its labels), all with one random append_id, which tells this
// append's rows from every other's. Rows of one stream collapse when parts
// merge (ReplacingMergeTree keeps the last inserted); reads take any of them.
func (s *Store) touchStreams(ctx context.Context, streams map[uint64]*logs.Line) error {
	type row struct {
		tenant, labels string
		id             uint64
	}
	rows := make([]row, 0, len(streams))
	for id, l := range streams {
		labels, err := json.Marshal(l.Labels)
		if err != nil {
			return fmt.Errorf("clickhouse store: stream labels: %w", err)
		}
		rows = append(rows, row{l.Tenant, string(labels), id})
	}
	if len(rows) == 0 {
		return nil
	}
	appendID := rand.Uint64()
	err := insert(ctx, s.conn, "INSERT INTO log_streams (tenant, stream, labels, append_id)", len(rows), func(i int) []any {
		return []any{rows[i].tenant, rows[i].id, rows[i].labels, appendID}
	})
	if err != nil {
		return s.fail("insert log streams", err)
	}
	return nil
}

// CountLogStreams implements metering.LogAppender. It reads the ids of the
// tenant's streams and compares here: a list of ids in the query would make
// its text exceed ClickHouse's max_query_size for a tenant with many streams.
func (s *Store) CountLogStreams(ctx context.Context, tenant string, keys []string) (stored, missing int, err error) {
	if s.closed.Load() {
		return 0, 0, metering.ErrNotReady
	}
	have := map[uint64]bool{}
	err = scan(ctx, s, s.conn, "count log streams", "SELECT DISTINCT stream FROM log_streams WHERE tenant = ?", []any{tenant},
		func(rows chdriver.Rows) (uint64, error) {
			var id uint64
			return id, rows.Scan(&id)
		},
		func(id uint64) error { have[id] = true; return nil })
	if err != nil {
		return 0, 0, err
	}
	seen := map[uint64]bool{}
	for _, k := range keys {
		if id := streamID(tenant, k); !have[id] && !seen[id] {
			seen[id] = true
			missing++
		}
	}
	return len(have), missing, nil
}

func placeholders(n int) string { return "?" + strings.Repeat(", ?", n-1) }

func sqlAny[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// streams returns the labels of the tenant's streams that match accepts.
func (s *Store) streams(ctx context.Context, tenant string, match func(map[string]string) bool) (map[uint64]map[string]string, error) {
	out := map[uint64]map[string]string{}
	type stream struct {
		id     uint64
		labels map[string]string
	}
	// A stream stored twice (two collectors at once) has the same labels: any() takes one.
	err := scan(ctx, s, s.conn, "log streams", "SELECT stream, any(labels) FROM log_streams WHERE tenant = ? GROUP BY stream", []any{tenant},
		func(rows chdriver.Rows) (stream, error) {
			var st stream
			var labels string
			if err := rows.Scan(&st.id, &labels); err != nil {
				return st, err
			}
			return st, json.Unmarshal([]byte(labels), &st.labels)
		},
		func(st stream) error {
			if match(st.labels) {
				out[st.id] = st.labels
			}
			return nil
		})
	return out, err
}

// ScanLogs implements metering.LogReader.
func (s *Store) ScanLogs(ctx context.Context, q metering.LogQuery, take func(logs.Line) bool) (string, error) {
	if err := q.Validate(); err != nil {
		return "", err
	}
	sts, err := s.streams(ctx, q.Tenant, q.Selector.MatchesStream)
	if err != nil || len(sts) == 0 {
		return "", err
	}
	cond := "tenant = ? AND time >= ? AND time < ?"
	args := []any{q.Tenant, q.From.UnixNano(), q.To.UnixNano()}
	// Beyond maxStreamsInQuery selected streams, the lines of the others are
	// skipped here instead: their ids would make the query text exceed
	// ClickHouse's max_query_size (256 KiB by default).
	if len(sts) <= maxStreamsInQuery {
		ids := make([]any, 0, len(sts))
		for id := range sts {
			ids = append(ids, id)
		}
		cond += " AND stream IN (" + placeholders(len(ids)) + ")"
		args = append(args, ids...)
	}
	order, cmp := sqlkit.Direction(q.Forward)
	return sqlkit.ScanLogs(q, func(after *sqlkit.Cursor, n int) ([]logs.Line, error) {
		c, a := cond, args
		if after != nil {
			c += " AND (time, seq, id) " + cmp + " (?, ?, unhex(?))"
			a = append(slices.Clip(a), after.Time, after.Seq, hex.EncodeToString(after.ID))
		}
		var out []logs.Line
		size := 0
		err := scan(ctx, s, s.conn, "query logs", "SELECT time, seq, id, stream, line, received_at, schema_version FROM log_lines FINAL WHERE "+c+
			" ORDER BY time "+order+", seq "+order+", id "+order+fmt.Sprintf(" LIMIT %d", n), a,
			func(rows chdriver.Rows) (logs.Line, error) {
				var l logs.Line
				var t, recv int64
				var seq uint32
				var id string
				var stream uint64
				var version uint16
				err := rows.Scan(&t, &seq, &id, &stream, &l.Line, &recv, &version)
				l.ID, l.Tenant, l.Labels, l.Seq, l.SchemaVersion = hex.EncodeToString([]byte(id)), q.Tenant, sts[stream], int(seq), int(version)
				l.Time, l.ReceivedAt = time.Unix(0, t).UTC(), time.Unix(0, recv).UTC()
				return l, err
			},
			func(l logs.Line) error {
				out, size = append(out, l), size+len(l.Line)
				if size >= sqlkit.LogChunkBytes {
					return errChunkFull
				}
				return nil
			})
		if err != nil && !errors.Is(err, errChunkFull) {
			return nil, err
		}
		return out, nil
	}, take)
}

// maxStreamsInQuery is the most stream ids a log query names in its text.
const maxStreamsInQuery = 1000

// errChunkFull stops a scan once a chunk has sqlkit.LogChunkBytes of lines.
var errChunkFull = errors.New("chunk full")

// activeStreams returns the labels of the tenant's streams that have a line in [from, to).
func (s *Store) activeStreams(ctx context.Context, tenant string, from, to time.Time) ([]map[string]string, error) {
	sts, err := s.streams(ctx, tenant, func(map[string]string) bool { return true })
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	// Which streams have lines needs no FINAL: every copy of a line is in its stream.
	err = scan(ctx, s, s.conn, "log labels", "SELECT DISTINCT stream FROM log_lines WHERE tenant = ? AND time >= ? AND time < ?",
		[]any{tenant, from.UnixNano(), to.UnixNano()},
		func(rows chdriver.Rows) (uint64, error) {
			var id uint64
			return id, rows.Scan(&id)
		},
		func(id uint64) error {
			if labels, ok := sts[id]; ok {
				out = append(out, labels)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteLogs implements metering.LogRetention with a mutation (18.16's only
// way to delete rows) on each shard that holds such lines (its first replica;
// ZooKeeper hands the mutation to the others), and returns once
// the mutations are done, so that no read shows a deleted line. A mutation
// rewrites the parts it touches: the collector runs this once per tenant per
// collector.logs.retention_interval. The tenant's streams left without lines
// go too, as in the embedded store (deleteEmptyStreams): a crash-looping app
// adds a stream per restart, and streams count against
// collector.logs.max_streams_per_tenant. A stream that comes back is stored anew.
//
// When ctx ends first, the mutation still completes on the server.
func (s *Store) DeleteLogs(ctx context.Context, tenant string, before time.Time) (int64, error) {
	if s.closed.Load() {
		return 0, metering.ErrNotReady
	}
	table := s.dsn.Database + "." + s.local("log_lines")
	var deleted int64
	for _, n := range s.shardLeads() {
		var count uint64
		if err := n.conn.QueryRow(ctx, "SELECT count() FROM "+table+" FINAL WHERE tenant = ? AND time < ?", tenant, before.UnixNano()).Scan(&count); err != nil {
			return deleted, s.fail("delete logs of "+tenant+" on "+n.addr, err)
		}
		if count > 0 {
			if err := n.conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE tenant = ? AND time < ?", tenant, before.UnixNano()); err != nil {
				return deleted, s.fail("delete logs of "+tenant+" on "+n.addr, err)
			}
			if err := s.awaitMutations(ctx, n, s.local("log_lines")); err != nil {
				return deleted, err
			}
			deleted += int64(count)
		}
		rows, err := s.emptyStreamRows(ctx, n, tenant)
		if err != nil {
			return deleted, err
		}
		if err := s.deleteStreamRows(ctx, n, tenant, rows); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// streamRow is one row of log_streams: a stream, and the append that wrote it.
type streamRow struct{ stream, appendID uint64 }

// emptyStreamRows returns the rows on n of the tenant's streams that have no
// line on n (a tenant's streams and lines share its shard). The rows are read
// before the lines: a row written after the rows were read is not among them,
// and an append writes its stream's row after its lines, so the lines of an
// append whose row is among them were in when the lines were read, and their
// stream is not empty. Deleting exactly these rows (deleteStreamRows) can
// therefore never take the last row of a stream that has lines.
func (s *Store) emptyStreamRows(ctx context.Context, n node, tenant string) ([]streamRow, error) {
	var rows []streamRow
	err := scan(ctx, s, n.conn, "list the log streams of "+tenant+" on "+n.addr,
		"SELECT stream, append_id FROM "+s.dsn.Database+"."+s.local("log_streams")+" WHERE tenant = ?", []any{tenant},
		func(r chdriver.Rows) (streamRow, error) {
			var row streamRow
			return row, r.Scan(&row.stream, &row.appendID)
		},
		func(row streamRow) error { rows = append(rows, row); return nil })
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	lined := map[uint64]bool{}
	err = scan(ctx, s, n.conn, "list the log streams with lines of "+tenant+" on "+n.addr,
		"SELECT DISTINCT stream FROM "+s.dsn.Database+"."+s.local("log_lines")+" WHERE tenant = ?", []any{tenant},
		func(r chdriver.Rows) (uint64, error) {
			var id uint64
			return id, r.Scan(&id)
		},
		func(id uint64) error { lined[id] = true; return nil })
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rows, func(row streamRow) bool { return lined[row.stream] }), nil
}

// deleteStreamRows deletes exactly rows (stream and append id) of the
// tenant's streams on n, maxStreamsInQuery per mutation so the query text
// stays within max_query_size, and returns once the mutations are done.
func (s *Store) deleteStreamRows(ctx context.Context, n node, tenant string, rows []streamRow) error {
	table := s.dsn.Database + "." + s.local("log_streams")
	for chunk := range slices.Chunk(rows, maxStreamsInQuery) {
		args := make([]any, 0, 1+2*len(chunk))
		args = append(args, tenant)
		for _, row := range chunk {
			args = append(args, row.stream, row.appendID)
		}
		if err := n.conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE tenant = ? AND (stream, append_id) IN ("+
			strings.TrimPrefix(strings.Repeat(", (?, ?)", len(chunk)), ", ")+")", args...); err != nil {
			return s.fail("delete the empty log streams of "+tenant+" on "+n.addr, err)
		}
		if err := s.awaitMutations(ctx, n, s.local("log_streams")); err != nil {
			return err
		}
	}
	if len(rows) > 0 {
		s.log.Info("empty log streams deleted", "tenant", tenant, "server", n.addr, "rows", len(rows))
	}
	return nil
}

// awaitMutations returns once no mutation of table (of the store's
// database) is pending on n or on another replica of its shard, and each of
// them knows n's newest: a replica learns of a mutation from ZooKeeper after
// the ALTER on n returned. The newest is compared by id, not by counting:
// the server forgets finished mutations past the last 100
// (finished_mutations_to_keep), so a count can fall behind for good.
// Replicated mutation ids are ZooKeeper's sequence numbers, zero-padded:
// the same on every replica, and ordered as text. A server alone numbers
// its own (mutation_N.txt, not ordered as text): on n only pending counts.
func (s *Store) awaitMutations(ctx context.Context, n node, table string) error {
	const query = "SELECT max(mutation_id), countIf(is_done = 0) FROM system.mutations WHERE database = ? AND table = ?"
	var newest string
	var pending uint64
	if err := n.conn.QueryRow(ctx, query, s.dsn.Database, table).Scan(&newest, &pending); err != nil {
		return s.fail("await the mutation of "+table+" on "+n.addr, err)
	}
	for _, r := range s.replicasOf(n) {
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			var known string
			if err := r.conn.QueryRow(ctx, query, s.dsn.Database, table).Scan(&known, &pending); err != nil {
				return s.fail("await the mutation of "+table+" on "+r.addr, err)
			}
			if pending == 0 && (r.addr == n.addr || known >= newest) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("clickhouse store: await the mutation of %s on %s: %w", table, r.addr, ctx.Err())
			case <-time.After(wait):
			}
		}
	}
	return nil
}
