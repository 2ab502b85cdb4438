package clickhouse_test

import (
	"context"
	"errors"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/metering/storetest"
)

// The faults of issue 21 §3 on a replicated cluster (two shards of two
// replicas on one ZooKeeper), each under the load of two real agents
// shipping through a real collector: every record the agents sent is stored
// exactly once, on both replicas of its shard, with nothing left in the
// spools and no dead letters.

// perAgent is how many usage records each agent ships during a fault.
const perAgent = 3000

func openReplicated(t *testing.T, c *chtest.Cluster) (*clickhouse.Store, string) {
	t.Helper()
	dsn := c.DSN(t)
	s, err := clickhouse.Open(context.Background(), dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, database(dsn)
}

// checkReplicas checks that the replicas of each shard hold the same usage
// records, each id once, and that the shards hold want records in all.
func checkReplicas(t *testing.T, c *chtest.Cluster, db string, want uint64) {
	t.Helper()
	ctx := context.Background()
	type holding struct{ ids, rows, digest uint64 }
	shards := map[int]holding{}
	for _, s := range c.Servers {
		conn, err := ch.Open(&ch.Options{Addr: []string{s.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		var h holding
		err = conn.QueryRow(ctx, "SELECT uniqExact(id), count(), groupBitXor(cityHash64(id)) FROM "+db+".usage_records_local FINAL WHERE tenant IN ('caami', 'ona')").Scan(&h.ids, &h.rows, &h.digest)
		conn.Close()
		if err != nil {
			t.Fatalf("records on %s: %v", s.Addr(), err)
		}
		if h.rows != h.ids {
			t.Errorf("shard %d replica %d reads %d rows of %d ids", s.Shard(), s.Replica(), h.rows, h.ids)
		}
		first, seen := shards[s.Shard()]
		switch {
		case !seen:
			shards[s.Shard()] = h
		case h != first:
			t.Errorf("shard %d's replica %d holds %d records (digest %x), its replica 1 %d (digest %x)", s.Shard(), s.Replica(), h.ids, h.digest, first.ids, first.digest)
		}
	}
	var total uint64
	for shard, h := range shards {
		if h.ids == 0 {
			t.Errorf("shard %d holds no records: the institutions were not spread", shard)
		}
		total += h.ids
	}
	if total != want {
		t.Errorf("the shards hold %d records, want %d", total, want)
	}
}

func TestReplicaKilledUnderLoadThenBackLeavesEveryRecordOnceOnBothReplicas(t *testing.T) {
	c := chtest.StartCluster(t, chtest.Shape{Shards: 2, Replicas: 2})
	store, db := openReplicated(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh := startShipping(t, ctx, store, perAgent)

	await(t, ctx, "a third of the records shipped", func() bool { return sh.left() <= 2*2*perAgent/3 })
	victim := c.Servers[1] // shard 1's second replica; the store entered through the first
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	// With a replica down, no insert is acknowledged: the collector answers
	// 503 and the agents keep their records.
	await(t, ctx, "a batch answered 503 with a replica down", func() bool { return sh.unavailable(t) > 0 })
	if err := victim.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	sh.finish(t, ctx)
	checkReplicas(t, c, db, 2*perAgent)
}

// zooKeeperOutage is how long ZooKeeper stays down: the 30 s of issue 21 §3,
// longer than the replicas' session timeout (chtest.SessionTimeout), so
// their sessions expire and the tables go read-only, and back.
const zooKeeperOutage = 30 * time.Second

func TestZooKeeperStoppedUnderLoadFailsInsertsClearlyThenLosesAndDuplicatesNothing(t *testing.T) {
	c := chtest.StartCluster(t, chtest.Shape{Shards: 2, Replicas: 2})
	store, db := openReplicated(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sh := startShipping(t, ctx, store, perAgent)

	await(t, ctx, "a third of the records shipped", func() bool { return sh.left() <= 2*2*perAgent/3 })
	if err := c.ZooKeeper.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	await(t, ctx, "a batch answered 503 with ZooKeeper down", func() bool { return sh.unavailable(t) > 0 })
	// An append fails as not ready (the collector's 503), saying why.
	probe := records("rva", 10, storetest.Base, storetest.Base.Add(time.Hour))
	if _, err := store.AppendUsage(ctx, probe); !errors.Is(err, metering.ErrNotReady) {
		t.Fatalf("AppendUsage with ZooKeeper down = %v, want an error that wraps ErrNotReady", err)
	} else {
		t.Logf("with ZooKeeper down: %v", err)
	}
	time.Sleep(zooKeeperOutage - time.Since(stopped)) // the outage itself, not a wait for a condition
	if err := c.ZooKeeper.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	sh.finish(t, ctx)
	checkReplicas(t, c, db, 2*perAgent)
}
