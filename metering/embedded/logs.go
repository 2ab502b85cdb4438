package embedded

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/internal/sqlkit"
)

// AppendLogs implements metering.LogAppender.
func (s *Store) AppendLogs(ctx context.Context, lines []logs.Line) (metering.AppendResult, error) {
	var res metering.AppendResult
	if s.closed.Load() {
		return res, metering.ErrNotReady
	}
	ids := make([][]byte, len(lines))
	keys := make([]string, len(lines))
	for i := range lines {
		id, err := sqlkit.DecodeID(lines[i].ID)
		if err != nil {
			return res, fmt.Errorf("embedded store: line %d: %w", i, err)
		}
		ids[i] = id
		// Batches come stream by stream: comparing with the previous line's
		// labels is cheaper than building each line's key.
		if i > 0 && maps.Equal(lines[i].Labels, lines[i-1].Labels) {
			keys[i] = keys[i-1]
		} else {
			keys[i] = logs.StreamKey(lines[i].Labels)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("embedded store: begin: %w", err)
	}
	defer tx.Rollback()
	streams, err := s.streamIDs(ctx, tx, lines, keys)
	if err != nil {
		return res, err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO log_lines (tenant, time, seq, id, stream, line, received_at, schema_version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, time, seq, id) DO NOTHING`)
	if err != nil {
		return res, fmt.Errorf("embedded store: prepare insert: %w", err)
	}
	defer stmt.Close()
	for i := range lines {
		l := &lines[i]
		out, err := stmt.ExecContext(ctx, l.Tenant, l.Time.UnixNano(), l.Seq, ids[i], streams[l.Tenant+"\x00"+keys[i]], l.Line,
			l.ReceivedAt.UnixNano(), l.SchemaVersion)
		if err != nil {
			return metering.AppendResult{}, fmt.Errorf("embedded store: insert line %d: %w", i, err)
		}
		if n, err := out.RowsAffected(); err != nil {
			return metering.AppendResult{}, fmt.Errorf("embedded store: insert line %d: %w", i, err)
		} else if n == 0 {
			res.Duplicates = append(res.Duplicates, i)
		}
	}
	if err := tx.Commit(); err != nil {
		return metering.AppendResult{}, fmt.Errorf("embedded store: commit: %w", err)
	}
	return res, nil
}

// streamIDs returns the id of every stream of lines, by tenant and key,
// creating the streams not stored yet (in tx, so they vanish with a failed batch).
func (s *Store) streamIDs(ctx context.Context, tx *sql.Tx, lines []logs.Line, keys []string) (map[string]int64, error) {
	ids := map[string]int64{}
	// The no-op update makes RETURNING answer for an existing stream too.
	upsert, err := tx.PrepareContext(ctx, `INSERT INTO log_streams (tenant, key, labels) VALUES (?, ?, ?)
		ON CONFLICT (tenant, key) DO UPDATE SET key = excluded.key RETURNING id`)
	if err != nil {
		return nil, fmt.Errorf("embedded store: prepare stream upsert: %w", err)
	}
	defer upsert.Close()
	for i := range lines {
		k := lines[i].Tenant + "\x00" + keys[i]
		if _, ok := ids[k]; ok {
			continue
		}
		labels, err := json.Marshal(lines[i].Labels)
		if err != nil {
			return nil, fmt.Errorf("embedded store: line %d labels: %w", i, err)
		}
		var id int64
		if err := upsert.QueryRowContext(ctx, lines[i].Tenant, keys[i], string(labels)).Scan(&id); err != nil {
			return nil, fmt.Errorf("embedded store: stream of line %d: %w", i, err)
		}
		ids[k] = id
	}
	return ids, nil
}

type stream struct {
	id     int64
	labels map[string]string
}

// streams returns the tenant's streams that match accepts, among those cond
// (a condition on log_streams, whose placeholders args fill) selects.
func (s *Store) streams(ctx context.Context, cond string, args []any, match func(map[string]string) bool) ([]stream, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, labels FROM log_streams WHERE `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("embedded store: log streams: %w", err)
	}
	defer rows.Close()
	var out []stream
	for rows.Next() {
		var st stream
		var labels string
		if err := rows.Scan(&st.id, &labels); err != nil {
			return nil, fmt.Errorf("embedded store: log streams: %w", err)
		}
		if err := json.Unmarshal([]byte(labels), &st.labels); err != nil {
			return nil, fmt.Errorf("embedded store: log stream %d: %w", st.id, err)
		}
		if match(st.labels) {
			out = append(out, st)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded store: log streams: %w", err)
	}
	return out, nil
}

// CountLogStreams implements metering.LogAppender. The keys go as one JSON
// array: SQLite refuses a statement with more than 32,766 variables.
func (s *Store) CountLogStreams(ctx context.Context, tenant string, keys []string) (stored, missing int, err error) {
	if s.closed.Load() {
		return 0, 0, metering.ErrNotReady
	}
	if keys == nil {
		keys = []string{} // JSON null would be one key
	}
	list, err := json.Marshal(keys)
	if err != nil {
		return 0, 0, fmt.Errorf("embedded store: count log streams: %w", err)
	}
	err = s.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM log_streams WHERE tenant = ?1),
		(SELECT count(*) FROM (SELECT DISTINCT value FROM json_each(?2)) k
			WHERE NOT EXISTS (SELECT 1 FROM log_streams WHERE tenant = ?1 AND key = k.value))`, tenant, string(list)).Scan(&stored, &missing)
	if err != nil {
		return 0, 0, fmt.Errorf("embedded store: count log streams: %w", err)
	}
	return stored, missing, nil
}

// ScanLogs implements metering.LogReader.
func (s *Store) ScanLogs(ctx context.Context, q metering.LogQuery, take func(logs.Line) bool) (string, error) {
	if err := q.Validate(); err != nil {
		return "", err
	}
	all, err := s.tenantStreams(ctx, q.Tenant)
	if err != nil {
		return "", err
	}
	byID := map[int64]map[string]string{}
	var ids []int64
	for _, st := range all {
		if q.Selector.MatchesStream(st.labels) {
			byID[st.id] = st.labels
			ids = append(ids, st.id)
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	// The stream ids go as one JSON array, not one variable each: SQLite
	// refuses a statement with more than 32,766 variables.
	list, err := json.Marshal(ids)
	if err != nil {
		return "", fmt.Errorf("embedded store: query logs: %w", err)
	}
	args := []any{q.Tenant, q.From.UnixNano(), q.To.UnixNano(), string(list)}
	cond := "tenant = ? AND time >= ? AND time < ? AND stream IN (SELECT value FROM json_each(?))"
	order, cmp := sqlkit.Direction(q.Forward)
	return sqlkit.ScanLogs(q, func(after *sqlkit.Cursor, n int) ([]logs.Line, error) {
		c, a := cond, args
		if after != nil {
			c += " AND (time, seq, id) " + cmp + " (?, ?, ?)"
			a = append(slices.Clip(a), after.Time, after.Seq, after.ID)
		}
		return s.logChunk(ctx, q.Tenant, byID, `SELECT time, seq, id, stream, line, received_at, schema_version FROM log_lines
			WHERE `+c+` ORDER BY time `+order+`, seq `+order+`, id `+order+fmt.Sprintf(" LIMIT %d", n), a)
	}, take)
}

// logChunk reads the lines query selects, up to sqlkit.LogChunkBytes of them.
// Like scan, it reads without the context's cancellation, which would cost a
// goroutine a row; a chunk is at most sqlkit.LogChunkLines rows, and the
// context is looked at before each.
func (s *Store) logChunk(ctx context.Context, tenant string, byID map[int64]map[string]string, query string, args []any) ([]logs.Line, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(context.WithoutCancel(ctx), query, args...)
	if err != nil {
		return nil, fmt.Errorf("embedded store: query logs: %w", err)
	}
	defer rows.Close()
	var out []logs.Line
	size := 0
	for size < sqlkit.LogChunkBytes && rows.Next() {
		var l logs.Line
		var t, recv, streamID int64
		var id []byte
		if err := rows.Scan(&t, &l.Seq, &id, &streamID, &l.Line, &recv, &l.SchemaVersion); err != nil {
			return nil, fmt.Errorf("embedded store: query logs: %w", err)
		}
		l.ID, l.Tenant, l.Labels = hex.EncodeToString(id), tenant, byID[streamID]
		l.Time, l.ReceivedAt = time.Unix(0, t).UTC(), time.Unix(0, recv).UTC()
		out, size = append(out, l), size+len(l.Line)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded store: query logs: %w", err)
	}
	return out, nil
}

// activeStreams returns the labels of the tenant's streams that have a line in [from, to).
func (s *Store) activeStreams(ctx context.Context, tenant string, from, to time.Time) ([]map[string]string, error) {
	sts, err := s.streams(ctx, `tenant = ? AND EXISTS (SELECT 1 FROM log_lines
		WHERE log_lines.stream = log_streams.id AND log_lines.time >= ? AND log_lines.time < ?)`,
		[]any{tenant, from.UnixNano(), to.UnixNano()}, func(map[string]string) bool { return true })
	if err != nil {
		return nil, err
	}
	out := make([]map[string]string, len(sts))
	for i, st := range sts {
		out[i] = st.labels
	}
	return out, nil
}

// DeleteLogs implements metering.LogRetention. The tenant's streams left
// without lines go in the same transaction: a crash-looping app adds a stream
// per restart, and streams count against collector.logs.max_streams_per_tenant.
// A stream that comes back is stored anew. Appends are in transactions of
// the same writer, so none can add a line to a stream being deleted.
func (s *Store) DeleteLogs(ctx context.Context, tenant string, before time.Time) (int64, error) {
	if s.closed.Load() {
		return 0, metering.ErrNotReady
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("embedded store: delete logs of %s: %w", tenant, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM log_lines WHERE tenant = ? AND time < ?`, tenant, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("embedded store: delete logs of %s: %w", tenant, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("embedded store: delete logs of %s: %w", tenant, err)
	}
	gone, err := tx.ExecContext(ctx, `DELETE FROM log_streams WHERE tenant = ?
		AND NOT EXISTS (SELECT 1 FROM log_lines WHERE log_lines.stream = log_streams.id)`, tenant)
	if err != nil {
		return 0, fmt.Errorf("embedded store: delete empty log streams of %s: %w", tenant, err)
	}
	streams, err := gone.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("embedded store: delete empty log streams of %s: %w", tenant, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("embedded store: delete logs of %s: %w", tenant, err)
	}
	if streams > 0 {
		s.streamCache.forget() // after the commit: see streamCache
	}
	return n, nil
}

// streamCache holds each tenant's log streams, parsed, so that a log read
// does not read and parse every stream of its tenant again: at
// max_streams_per_tenant streams that was most of a read's cost (issue 19's
// abuse benchmark). A stream never changes once stored, and SQLite gives a
// new one the id one past the largest stored, so a refresh reads only the
// ids past the largest one it holds. Only a deletion can make an id come
// back (when it removed the largest), so every deletion of streams (DeleteLogs,
// after its commit) forgets every tenant's streams, and a refresh that
// began before it does not keep what it read. Deletions by another process
// on the same file are not seen: the store is one process's.
type streamCache struct {
	mu      sync.Mutex
	gen     uint64 // deletions so far
	tenants map[string]cachedStreams
}

// cachedStreams are a tenant's streams by id. list is only appended to, so
// a reader may keep a slice of it without the lock.
type cachedStreams struct {
	maxID int64
	list  []stream
}

func (c *streamCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.tenants = nil
}

// tenantStreams returns every stream of tenant, from the cache and the
// streams stored since.
func (s *Store) tenantStreams(ctx context.Context, tenant string) ([]stream, error) {
	c := &s.streamCache
	c.mu.Lock()
	gen, cur := c.gen, c.tenants[tenant]
	c.mu.Unlock()
	fresh, err := s.streams(ctx, "tenant = ? AND id > ? ORDER BY id", []any{tenant, cur.maxID}, func(map[string]string) bool { return true })
	if err != nil || len(fresh) == 0 {
		return cur.list, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		now := c.tenants[tenant] // another read may have added some meanwhile
		for _, st := range fresh {
			if st.id > now.maxID {
				now.list, now.maxID = append(now.list, st), st.id
			}
		}
		if c.tenants == nil {
			c.tenants = map[string]cachedStreams{}
		}
		c.tenants[tenant] = now
	}
	return append(slices.Clip(cur.list), fresh...), nil
}
