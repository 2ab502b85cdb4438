package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"
)

// replicatedSettings are sent with every query in replicated mode, unless the
// DSN sets them (docs/clickhouse.md, "Replication").
var replicatedSettings = map[string]any{
	// ReplicatedMergeTree drops an insert whose block equals one of the last
	// hundred. The store finds duplicates by id itself, and two appends may
	// well write equal rows to the accepted ledger that must both count.
	"insert_deduplicate": 0,
	// A partition dropped (retention) is gone from every replica when the
	// ALTER returns, not only from the one that ran it.
	"replication_alter_partitions_sync": 2,
	// Reads through a Distributed table skip a replica more than a second
	// behind its shard while another is not (ClickHouse's default is 5
	// minutes): a replica back from an outage has not fetched yet the rows of
	// the appends that failed while it was away, and the duplicate check of
	// their retry must see them.
	"max_replica_delay_for_distributed_queries": 1,
}

// syncedConn is the store's connection in replicated mode. An insert through
// a Distributed table (insert_distributed_sync) is on one replica of each
// shard it touches when it returns; a batch sent through syncedConn returns
// once every replica of every shard holds it, so that acknowledged rows
// survive the loss of any one replica and every replica reads them.
//
// It waits with SYSTEM SYNC REPLICA on each replica rather than asking for
// insert_quorum, because 18.16's quorum inserts are serial per table and
// shard (a second insert while one waits for its quorum fails with code 286:
// measured, 22 of 30 concurrent inserts were refused) and a table's last
// quorum-inserted part is never mutated until another one follows (DeleteLogs
// waited forever). Current releases insert quorum writes in parallel
// (insert_quorum_parallel, the default since 20.10): there insert_quorum=2 in
// the DSN does the same in one round trip.
type syncedConn struct {
	chdriver.Conn
	s *Store
}

// PrepareBatch implements chdriver.Conn: the batch's Send waits for every replica.
func (c syncedConn) PrepareBatch(ctx context.Context, query string, opts ...chdriver.PrepareBatchOption) (chdriver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, err
	}
	return &syncedBatch{Batch: b, ctx: ctx, table: insertTable(query), s: c.s}, nil
}

// insertTable returns the table an INSERT INTO query names.
func insertTable(query string) string {
	fields := strings.Fields(query)
	if len(fields) < 3 || !strings.EqualFold(fields[0], "INSERT") || !strings.EqualFold(fields[1], "INTO") {
		return ""
	}
	table, _, _ := strings.Cut(fields[2], "(")
	return table
}

type syncedBatch struct {
	chdriver.Batch
	ctx   context.Context
	table string
	s     *Store
}

// Send implements chdriver.Batch: it sends the rows, then waits until every
// replica holds them.
func (b *syncedBatch) Send() error {
	if err := b.Batch.Send(); err != nil {
		return err
	}
	if b.table == "" {
		return errors.New("clickhouse store: replicated insert: no table in the query")
	}
	return b.s.syncReplicas(b.ctx, b.s.local(b.table))
}

// unsynced is the store's connection without syncedConn's wait, for an
// append that waits once, after all its inserts (awaitReplicas).
func (s *Store) unsynced() chdriver.Conn {
	if sc, ok := s.conn.(syncedConn); ok {
		return sc.Conn
	}
	return s.conn
}

// awaitReplicas returns, on a replicated cluster, once every replica holds
// what was written to tables (their local tables), and at once otherwise. An
// append calls it even when nothing it sent was new: its rows may be those
// of an earlier attempt whose wait failed, on one replica only so far.
func (s *Store) awaitReplicas(ctx context.Context, tables ...string) error {
	if !s.dsn.Replicated {
		return nil
	}
	for _, t := range tables {
		if err := s.syncReplicas(ctx, s.local(t)); err != nil {
			return err
		}
	}
	return nil
}

// syncReplicas returns once every server has fetched every part its shard's
// replicas wrote to table (of the store's database) so far, or with the error
// of the first that cannot: a replica that is down fails the wait, and with
// it the insert, until it is back. The first failure stops the other waits:
// a replica waiting for a part only the dead one had would otherwise hold
// the append for receive_timeout.
func (s *Store) syncReplicas(ctx context.Context, table string) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, n := range s.nodes {
		g.Go(func() error {
			if err := n.conn.Exec(ctx, "SYSTEM SYNC REPLICA "+s.dsn.Database+"."+table); err != nil {
				return s.fail(fmt.Sprintf("wait for the replica on %s of %s", n.addr, table), err)
			}
			return nil
		})
	}
	return g.Wait()
}
