package clickhouse_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/metering/storetest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// caps is what the contract cannot ask of ClickHouse: see the package doc.
var caps = storetest.Capabilities{RacyDuplicateCounts: true}

// quiet drops the store's log: every test migrates a database of its own.
var quiet = slog.New(slog.DiscardHandler)

// dsner is a chtest.Server or chtest.Cluster.
type dsner interface{ DSN(t testing.TB) string }

func open(t testing.TB, target dsner) *clickhouse.Store {
	t.Helper()
	s, err := clickhouse.Open(context.Background(), target.DSN(t), quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The two runs of the contract share nothing but the machine: in parallel,
// the client of one uses the CPU while the server of the other inserts.

func TestContractSingleServer(t *testing.T) {
	t.Parallel()
	server := chtest.Single(t)
	storetest.Run(t, func(t *testing.T) metering.Store { return open(t, server) }, caps)
}

func TestContractTwoShards(t *testing.T) {
	t.Parallel()
	cluster := chtest.TwoShards(t)
	storetest.Run(t, func(t *testing.T) metering.Store { return open(t, cluster) }, caps)
}

// The contract on replicas asks for nothing more than on shards: every
// insert is on both replicas of its shard when acknowledged (insert_quorum),
// so a read sees it whichever replica answers.
func TestContractReplicated(t *testing.T) {
	t.Parallel()
	cluster := chtest.Replicated(t)
	storetest.Run(t, func(t *testing.T) metering.Store { return open(t, cluster) }, caps)
}
