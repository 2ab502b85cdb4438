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
// labels) that are not stored yet.
func (s *Store) putStreams(ctx context.Context, streams map[uint64]*logs.Line) error {
	var tenants []string
	var ids []any
	for id, l := range streams {
		if !slices.Contains(tenants, l.Tenant) {
			tenants = append(tenants, l.Tenant)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil
	}
	stored := map[uint64]bool{}
	err := scan(ctx, s, s.conn, "look up log streams", "SELECT stream FROM log_streams WHERE tenant IN ("+placeholders(len(tenants))+
		") AND stream IN ("+placeholders(len(ids))+")", append(sqlAny(tenants), ids...),
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

// QueryLogs implements metering.LogReader.
//
// Line filters are LogQL's, with Go's RE2 regexps, so they run here: the lines
// of the selected streams are read in chunks, in the page's order, until the
// page is full or the range is exhausted.
func (s *Store) QueryLogs(ctx context.Context, q metering.LogQuery) (metering.LogPage, error) {
	var page metering.LogPage
	if err := q.Validate(); err != nil {
		return page, err
	}
	var after *sqlkit.Cursor
	if q.Cursor != "" {
		c, err := sqlkit.ParseCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		after = &c
	}
	sts, err := s.streams(ctx, q.Tenant, q.Selector.MatchesStream)
	if err != nil || len(sts) == 0 {
		return page, err
	}
	ids := make([]any, 0, len(sts))
	for id := range sts {
		ids = append(ids, id)
	}
	cond := "tenant = ? AND time >= ? AND time < ? AND stream IN (" + placeholders(len(ids)) + ")"
	args := append([]any{q.Tenant, q.From.UnixNano(), q.To.UnixNano()}, ids...)
	order, cmp := "DESC", "<"
	if q.Forward {
		order, cmp = "ASC", ">"
	}
	chunk := q.Limit + 1
	if len(q.Selector.Filters) > 0 {
		chunk = max(chunk, 1000)
	}
	var last sqlkit.Cursor
	for {
		c, a := cond, args
		if after != nil {
			c += " AND (time, seq, id) " + cmp + " (?, ?, unhex(?))"
			a = append(slices.Clip(a), after.Time, after.Seq, hex.EncodeToString(after.ID))
		}
		read, full := 0, false
		err := scan(ctx, s, s.conn, "query logs", "SELECT time, seq, id, stream, line, received_at, schema_version FROM log_lines FINAL WHERE "+c+
			" ORDER BY time "+order+", seq "+order+", id "+order+fmt.Sprintf(" LIMIT %d", chunk), a,
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
				read++
				id, _ := hex.DecodeString(l.ID)
				pos := sqlkit.Cursor{Time: l.Time.UnixNano(), Seq: l.Seq, ID: id}
				after = &pos
				if !q.Selector.MatchesLine(l.Line) {
					return nil
				}
				if len(page.Lines) == q.Limit {
					page.Next, full = last.String(), true
					return errPageFull
				}
				page.Lines, last = append(page.Lines, l), pos
				return nil
			})
		if err != nil && !errors.Is(err, errPageFull) {
			return metering.LogPage{}, err
		}
		if full || read < chunk {
			return page, nil
		}
	}
}

// errPageFull stops a scan once a page has its lines and one more was found.
var errPageFull = errors.New("page full")

// LogLabels implements metering.LogReader.
func (s *Store) LogLabels(ctx context.Context, tenant string, from, to time.Time) ([]string, error) {
	sts, err := s.activeStreams(ctx, tenant, from, to)
	return sqlkit.LabelNames(sts), err
}

// LogLabelValues implements metering.LogReader.
func (s *Store) LogLabelValues(ctx context.Context, tenant, name string, from, to time.Time) ([]string, error) {
	sts, err := s.activeStreams(ctx, tenant, from, to)
	return sqlkit.LabelValues(sts, name), err
}

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
// collector.logs.retention_interval. Streams stay, as in the embedded store.
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
