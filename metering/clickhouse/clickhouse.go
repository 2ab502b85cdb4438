// Package clickhouse is the metering store on ClickHouse, for a platform that
// outgrows one machine: usage records, events and log lines in MergeTree
// tables partitioned by month, on one server or sharded by institution over a
// cluster. docs/clickhouse.md gives the schema and why, the measurements
// behind it, and the production layout.
//
// It speaks the native protocol through github.com/ClickHouse/clickhouse-go/v2
// and keeps to what ClickHouse 18.16 (Debian's, which the tests run) and
// current releases both have: no DateTime64, Map, TTL or LowCardinality;
// inserts through PrepareBatch naming their columns.
//
// What it promises beyond the embedded store's contract, and what not:
//
//   - Reads are exact before merges happen: tables are ReplacingMergeTree with a
//     version that makes the first arrival of an id win, read with FINAL.
//   - An append reports as duplicates the records whose id is stored already
//     (it looks before it inserts). Two appends of the same record at the same
//     moment may both report it new (storetest.Capabilities.RacyDuplicateCounts);
//     it is still read once.
//   - An append that fails may have stored part of its batch (ClickHouse has no
//     transactions: an insert makes one part per month partition, and a server
//     that dies in between keeps the parts it finished). Sending the batch again
//     completes it, and reports the records stored the first time as duplicates.
//   - The accepted ledger (usage_accepted, read by AcceptedUsage) is a second
//     insert once the records' succeeded, with no transaction across the two.
//     An append that fails after some of its records were inserted (a crash
//     before the ledger's insert or between the records' parts, a lost
//     connection, its context ending) leaves them stored and not counted, and
//     the retry reports them as duplicates: accepted < stored for them, which
//     reconciliation flags. A record that racing appends both reported new is
//     counted by each, so accepted ≥ stored there.
package clickhouse

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/internal/sqlkit"
)

// Scheme is the DSN scheme that selects this store.
const Scheme = "clickhouse"

// DSN is a parsed data source name:
//
//	clickhouse://[user[:password]@]host:port[,host:port…]/database[?option=value&…]
//
// The port is ClickHouse's native port (9000 by default); HTTP is not
// supported. Options:
//
//	cluster=NAME     Distributed mode: NAME is a cluster of the server's
//	                 remote_servers; tables are created on every shard and
//	                 written and read through Distributed tables sharded by
//	                 institution. Without it, one server holds everything.
//	replicated=true  with cluster: each shard's replicas (internal_replication)
//	                 hold ReplicatedMergeTree tables on the servers'
//	                 ZooKeeper (or Keeper), created ON CLUSTER; an insert is
//	                 acknowledged once every replica holds it (syncedConn).
//	dial_timeout=5s, read_timeout=5m, compress=lz4, secure=true,
//	skip_verify=true, max_open_conns=N, username=…, password=…
//	                 connection options of clickhouse-go (see its documentation).
//	any other name=value
//	                 a ClickHouse setting sent with every query (the server
//	                 rejects settings it does not know).
//
// The database is created when missing.
type DSN struct {
	// Database holds the store's tables.
	Database string
	// Cluster names the remote_servers cluster of Distributed mode ("" for one server).
	Cluster string
	// Replicated says the cluster's shards are ReplicatedMergeTree replicas.
	Replicated bool
	// Options connect to the entry server, without a database (it may not exist yet).
	Options *ch.Options
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseDSN parses and checks a clickhouse:// DSN. Errors name the part at fault.
func ParseDSN(dsn string) (*DSN, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error repeats the DSN, and with it the password.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("clickhouse dsn: %w", err)
	}
	switch {
	case u.Scheme == "http" || u.Scheme == "https":
		return nil, fmt.Errorf("clickhouse dsn: %s:// is not supported, use clickhouse://host:9000/database (the native protocol)", u.Scheme)
	case u.Scheme != Scheme:
		return nil, fmt.Errorf("clickhouse dsn: scheme %q must be %s://", u.Scheme, Scheme)
	case u.Host == "":
		return nil, errors.New("clickhouse dsn: a host:port is required, e.g. clickhouse://127.0.0.1:9000/paasmeter")
	}
	d := &DSN{Database: u.Path}
	if len(d.Database) > 0 && d.Database[0] == '/' {
		d.Database = d.Database[1:]
	}
	if !identRE.MatchString(d.Database) {
		return nil, fmt.Errorf("clickhouse dsn: database %q must be letters, digits and _ (e.g. clickhouse://127.0.0.1:9000/paasmeter)", d.Database)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("clickhouse dsn: options: %w", err)
	}
	d.Cluster = q.Get("cluster")
	if q.Has("cluster") && !identRE.MatchString(d.Cluster) {
		return nil, fmt.Errorf("clickhouse dsn: cluster %q must be letters, digits and _", d.Cluster)
	}
	if q.Has("replicated") {
		if d.Replicated, err = strconv.ParseBool(q.Get("replicated")); err != nil {
			return nil, fmt.Errorf("clickhouse dsn: replicated %q must be true or false", q.Get("replicated"))
		}
		if d.Replicated && d.Cluster == "" {
			return nil, errors.New("clickhouse dsn: replicated=true needs cluster=NAME, the remote_servers cluster of the replicas")
		}
	}
	q.Del("cluster")
	q.Del("replicated")
	u.RawQuery, u.Path = q.Encode(), ""
	if d.Options, err = ch.ParseDSN(u.String()); err != nil {
		return nil, fmt.Errorf("clickhouse dsn: %w", err)
	}
	d.Options.Protocol = ch.Native
	if d.Cluster != "" {
		// An insert into a Distributed table is otherwise queued on the entry
		// server and sent to its shard later: an acknowledgement must mean
		// the rows are on their shard.
		d.Options.Settings["insert_distributed_sync"] = 1
	}
	if d.Replicated {
		for name, value := range replicatedSettings {
			if _, set := d.Options.Settings[name]; !set {
				d.Options.Settings[name] = value
			}
		}
	}
	return d, nil
}

// Store is the ClickHouse metering store.
type Store struct {
	// ActiveStreams answers the log label queries.
	sqlkit.ActiveStreams
	dsn *DSN
	// conn reads and writes the store's tables (the Distributed ones in cluster mode).
	conn chdriver.Conn
	// nodes reach every server of the store one by one, without a default
	// database: for migrations, mutations and partitions, which 18.16 cannot
	// send through a Distributed table or ON CLUSTER without ZooKeeper.
	nodes  []node
	log    *slog.Logger
	closed atomic.Bool
}

type node struct {
	addr string
	// shard numbers the node's shard in the cluster (1 alone): the nodes of
	// a shard are its replicas, and the first of them runs its mutations.
	shard uint32
	conn  chdriver.Conn
}

var _ metering.Store = (*Store)(nil)

// Open connects to the store that dsn names (see DSN), creates its database
// and tables on every server if needed and migrates them. It fails when a
// server's schema is newer than this binary knows.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	d, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Store{dsn: d, log: log}
	s.ActiveStreams = s.activeStreams
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	entry, err := ch.Open(s.dsn.Options)
	if err != nil {
		return s.fail("connect", err)
	}
	s.nodes = []node{{addr: s.dsn.Options.Addr[0], shard: 1, conn: entry}}
	if s.dsn.Cluster != "" {
		if err := s.openShards(ctx, entry); err != nil {
			return err
		}
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	opts := *s.dsn.Options
	opts.Auth.Database = s.dsn.Database
	if s.conn, err = ch.Open(&opts); err != nil {
		return s.fail("connect", err)
	}
	if s.dsn.Replicated {
		s.conn = syncedConn{Conn: s.conn, s: s}
	}
	return nil
}

// openShards connects to every server of the cluster, as the entry server's
// remote_servers lists them.
func (s *Store) openShards(ctx context.Context, entry chdriver.Conn) error {
	rows, err := entry.Query(ctx, "SELECT host_name, port, shard_num FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", s.dsn.Cluster)
	if err != nil {
		return s.fail("list the cluster's servers", err)
	}
	var listed []node
	for rows.Next() {
		var host string
		var port uint16
		var n node
		if err := rows.Scan(&host, &port, &n.shard); err != nil {
			rows.Close()
			return s.fail("list the cluster's servers", err)
		}
		n.addr = net.JoinHostPort(host, strconv.Itoa(int(port)))
		listed = append(listed, n)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return s.fail("list the cluster's servers", err)
	}
	if len(listed) == 0 {
		return fmt.Errorf("clickhouse store: cluster %q is not in the remote_servers of %s", s.dsn.Cluster, s.nodes[0].addr)
	}
	// The entry server is one of the cluster's or a proxy in front of it:
	// every listed server gets a connection of its own.
	entry.Close()
	s.nodes = nil
	for _, n := range listed {
		opts := *s.dsn.Options
		opts.Addr = []string{n.addr}
		opts.MaxOpenConns, opts.MaxIdleConns = 2, 1
		if s.dsn.Replicated {
			// Every insert waits on every replica (syncedConn).
			opts.MaxOpenConns, opts.MaxIdleConns = 8, 2
		}
		if n.conn, err = ch.Open(&opts); err != nil {
			return s.fail("connect to "+n.addr, err)
		}
		s.nodes = append(s.nodes, n)
	}
	return nil
}

// shardLeads returns the first node of each shard, which runs the shard's
// mutations and partition drops: ReplicatedMergeTree passes them on to the
// shard's other replicas itself.
func (s *Store) shardLeads() []node {
	var out []node
	for _, n := range s.nodes {
		if len(out) == 0 || out[len(out)-1].shard != n.shard {
			out = append(out, n)
		}
	}
	return out
}

// replicasOf returns the nodes of lead's shard.
func (s *Store) replicasOf(lead node) []node {
	var out []node
	for _, n := range s.nodes {
		if n.shard == lead.shard {
			out = append(out, n)
		}
	}
	return out
}

// local returns the name, on each node, of the table that holds the rows of
// table name: name_local in cluster mode.
func (s *Store) local(name string) string {
	if s.dsn.Cluster != "" {
		return name + "_local"
	}
	return name
}

// fail wraps err of op and tells the callers what kind of failure it is: the
// server is unreachable (metering.ErrNotReady) or behind
// (metering.ErrOverloaded), so that the collector answers 503 or 429 and the
// agents retry, or anything else.
func (s *Store) fail(op string, err error) error {
	var ex *ch.Exception
	var netErr net.Error
	switch {
	case errors.As(err, &ex):
		switch ex.Code {
		case codeTooManyParts, codeTooManySimultaneousQueries, codeMemoryLimitExceeded:
			err = errors.Join(metering.ErrOverloaded, err)
		case codeSocketTimeout, codeNetworkError, codeAllConnectionTriesFailed,
			codeNoZooKeeper, codeKeeperException, codeTableIsReadOnly,
			codeTooFewLiveReplicas, codeUnsatisfiedQuorumForPreviousWrite, codeUnknownStatusOfInsert,
			codeTimeoutExceeded:
			err = errors.Join(metering.ErrNotReady, err)
		}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, ch.ErrAcquireConnTimeout), errors.Is(err, ch.ErrConnectionClosed):
		err = errors.Join(metering.ErrNotReady, err)
	}
	return fmt.Errorf("clickhouse store: %s: %w", op, err)
}

// ClickHouse error codes (src/Common/ErrorCodes.cpp) that mean "try later".
const (
	codeMemoryLimitExceeded        = 241
	codeTooManyParts               = 252
	codeTooManySimultaneousQueries = 202

	// A server a Distributed query or insert needs is unreachable.
	codeSocketTimeout            = 209
	codeNetworkError             = 210
	codeAllConnectionTriesFailed = 279
	// ZooKeeper is unreachable, or the session with it was lost and the
	// replicated tables are read-only until it is back.
	codeNoZooKeeper     = 225
	codeTableIsReadOnly = 242
	codeKeeperException = 999
	// Fewer replicas of the shard are alive than insert_quorum; the insert
	// before has not reached its quorum yet (18.16 takes one quorum insert per
	// table and shard at a time); the insert did not reach its quorum in
	// insert_quorum_timeout (it may be stored: a retry finds it by id).
	codeTooFewLiveReplicas                = 285
	codeUnsatisfiedQuorumForPreviousWrite = 286
	codeUnknownStatusOfInsert             = 319
	// A wait for a replica (SYSTEM SYNC REPLICA) ran past receive_timeout:
	// the part it waits for is on a replica that is down.
	codeTimeoutExceeded = 159
)

// String describes the store for logs: its servers, database and cluster,
// without credentials.
func (s *Store) String() string {
	addrs := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		addrs[i] = n.addr
	}
	out := Scheme + "://" + strings.Join(addrs, ",") + "/" + s.dsn.Database
	if s.dsn.Cluster != "" {
		out += "?cluster=" + s.dsn.Cluster
	}
	if s.dsn.Replicated {
		out += "&replicated=true"
	}
	return out
}

// Ready implements metering.Store: every server answers.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return metering.ErrNotReady
	}
	for _, n := range s.nodes {
		if err := n.conn.Ping(ctx); err != nil {
			return errors.Join(metering.ErrNotReady, fmt.Errorf("clickhouse store: %s: %w", n.addr, err))
		}
	}
	return nil
}

// Close implements metering.Store. Calls in flight finish on their connections first.
func (s *Store) Close() error {
	s.closed.Store(true)
	var errs []error
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	for _, n := range s.nodes {
		errs = append(errs, n.conn.Close())
	}
	return errors.Join(errs...)
}
