package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// AppendLogs implements metering.LogAppender. The lines' streams are stored
// first, when new; a failed append may leave a stream without lines, which no
// read shows.
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
	if err := s.putStreams(ctx, labels); err != nil {
		return metering.AppendResult{}, err
	}
	return s.appendNew(ctx, appendSpec{
		table: "log_lines", timeCol: "time", n: len(lines),
		columns: "tenant, time, seq, id, stream, line, received_at, schema_version",
		// A line's id covers its text: no content hash to compare.
		key: func(i int) (string, string, time.Time, []byte) {
			return lines[i].ID, lines[i].Tenant, lines[i].Time, nil
		},
		row: func(i int, id, _ string) []any {
			l := &lines[i]
			return []any{l.Tenant, l.Time.UnixNano(), uint32(l.Seq), id, streams[i], l.Line, l.ReceivedAt.UnixNano(), uint16(l.SchemaVersion)}
		},
	})
}

// putStreams stores the streams (by id, each with a line that carries its
// labels) that are not stored yet. The stored ids are read per tenant and
// compared here: a list of ids in the query would make its text exceed
// ClickHouse's max_query_size for a push of many streams.
func (s *Store) putStreams(ctx context.Context, streams map[uint64]*logs.Line) error {
	var tenants []string
	for _, l := range streams {
		if !slices.Contains(tenants, l.Tenant) {
			tenants = append(tenants, l.Tenant)
		}
	}
	if len(tenants) == 0 {
		return nil
	}
	stored := map[uint64]bool{}
	err := scan(ctx, s, s.conn, "look up log streams", "SELECT DISTINCT stream FROM log_streams WHERE tenant IN ("+placeholders(len(tenants))+")", sqlAny(tenants),
		func(rows chdriver.Rows) (uint64, error) {
			var id uint64
			return id, rows.Scan(&id)
		},
		func(id uint64) error { stored[id] = true; return nil })
	if err != nil {
		return err
	}
	type row struct {
		tenant, labels string
		id             uint64
	}
	var missing []row
	for id, l := range streams {
		if stored[id] {
			continue
		}
		labels, err := json.Marshal(l.Labels)
		if err != nil {
			return fmt.Errorf("clickhouse store: stream labels: %w", err)
		}
		missing = append(missing, row{l.Tenant, string(labels), id})
	}
	if len(missing) == 0 {
		return nil
	}
	err = insert(ctx, s.conn, "INSERT INTO log_streams (tenant, stream, labels)", len(missing), func(i int) []any {
		return []any{missing[i].tenant, missing[i].id, missing[i].labels}
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
// way to delete rows) on each server that holds such lines, and returns once
// the mutations are done, so that no read shows a deleted line. A mutation
// rewrites the parts it touches: the collector runs this once per tenant per
// collector.logs.retention_interval. Streams stay, unlike in the embedded
// store: an append stores its streams before its lines, so deleting the
// streams without lines could take one whose lines are on their way, and
// those lines would never be read. (Deleting them safely needs the time a
// stream was last appended to.)
//
// When ctx ends first, the mutation still completes on the server.
func (s *Store) DeleteLogs(ctx context.Context, tenant string, before time.Time) (int64, error) {
	if s.closed.Load() {
		return 0, metering.ErrNotReady
	}
	table := s.dsn.Database + "." + s.local("log_lines")
	var deleted int64
	for _, n := range s.nodes {
		var count uint64
		if err := n.conn.QueryRow(ctx, "SELECT count() FROM "+table+" FINAL WHERE tenant = ? AND time < ?", tenant, before.UnixNano()).Scan(&count); err != nil {
			return deleted, s.fail("delete logs of "+tenant+" on "+n.addr, err)
		}
		if count == 0 {
			continue
		}
		if err := n.conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE tenant = ? AND time < ?", tenant, before.UnixNano()); err != nil {
			return deleted, s.fail("delete logs of "+tenant+" on "+n.addr, err)
		}
		if err := s.awaitMutations(ctx, n, s.local("log_lines")); err != nil {
			return deleted, err
		}
		deleted += int64(count)
	}
	return deleted, nil
}

// awaitMutations returns once no mutation of table (of the store's database) is pending on n.
func (s *Store) awaitMutations(ctx context.Context, n node, table string) error {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var pending uint64
		if err := n.conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0",
			s.dsn.Database, table).Scan(&pending); err != nil {
			return s.fail("await the mutation of "+table+" on "+n.addr, err)
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clickhouse store: await the mutation of %s on %s: %w", table, n.addr, ctx.Err())
		case <-time.After(wait):
		}
	}
}
