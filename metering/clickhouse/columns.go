package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// columns are the values of a bulk insert, column by column. clickhouse-go
// takes a typed slice into a column in one call (Batch.Column(i).Append),
// where a row at a time boxes every value in an interface and converts it
// back: that was a third of the collector's CPU when it stored usage
// (docs/benchmarks.md).
type columns struct {
	// rows are the indexes, into the caller's batch, of the records to insert.
	rows   []int
	names  []string
	values []any
}

// addColumn adds column name to c with value(i) for each of c.rows. T is a
// type the column takes a slice of: string for String, []byte for
// FixedString, int64 for Int64, *int32 for Nullable(Int32), and so on.
func addColumn[T any](c *columns, name string, value func(i int) T) {
	out := make([]T, len(c.rows))
	for j, i := range c.rows {
		out[j] = value(i)
	}
	c.names = append(c.names, name)
	c.values = append(c.values, out)
}

// insertColumns sends c into table as one batch (one block).
func insertColumns(ctx context.Context, conn chdriver.Conn, table string, c *columns) error {
	return send(ctx, conn, "INSERT INTO "+table+" ("+strings.Join(c.names, ", ")+")", func(b chdriver.Batch) error {
		for i, v := range c.values {
			if err := b.Column(i).Append(v); err != nil {
				return fmt.Errorf("column %s: %w", c.names[i], err)
			}
		}
		return nil
	})
}

// insert sends n rows, row(i) giving row i, as one batch (one block): for
// inserts of a few rows, where boxing them costs nothing that matters.
func insert(ctx context.Context, conn chdriver.Conn, query string, n int, row func(i int) []any) error {
	return send(ctx, conn, query, func(b chdriver.Batch) error {
		for i := range n {
			if err := b.Append(row(i)...); err != nil {
				return fmt.Errorf("row %d: %w", i, err)
			}
		}
		return nil
	})
}

// send prepares a batch for query, has fill fill it, and sends it. 18.16
// takes inserts no other way from clickhouse-go: an INSERT … VALUES through
// Exec hangs, and a batch must name its columns.
func send(ctx context.Context, conn chdriver.Conn, query string, fill func(chdriver.Batch) error) error {
	b, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	if err := fill(b); err != nil {
		return errors.Join(err, b.Abort())
	}
	return b.Send()
}
