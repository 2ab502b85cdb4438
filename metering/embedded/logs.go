package embedded

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
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
		// The no-op update makes RETURNING answer for an existing stream too.
		err = tx.QueryRowContext(ctx, `INSERT INTO log_streams (tenant, key, labels) VALUES (?, ?, ?)
			ON CONFLICT (tenant, key) DO UPDATE SET key = excluded.key RETURNING id`, lines[i].Tenant, keys[i], string(labels)).Scan(&id)
		if err != nil {
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
	sts, err := s.streams(ctx, "tenant = ?", []any{q.Tenant}, q.Selector.MatchesStream)
	if err != nil || len(sts) == 0 {
		return "", err
	}
	byID := make(map[int64]map[string]string, len(sts))
	ids := make([]int64, 0, len(sts))
	for _, st := range sts {
		byID[st.id] = st.labels
		ids = append(ids, st.id)
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
func (s *Store) logChunk(ctx context.Context, tenant string, byID map[int64]map[string]string, query string, args []any) ([]logs.Line, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
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
	if _, err := tx.ExecContext(ctx, `DELETE FROM log_streams WHERE tenant = ?
		AND NOT EXISTS (SELECT 1 FROM log_lines WHERE log_lines.stream = log_streams.id)`, tenant); err != nil {
		return 0, fmt.Errorf("embedded store: delete empty log streams of %s: %w", tenant, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("embedded store: delete logs of %s: %w", tenant, err)
	}
	return n, nil
}
