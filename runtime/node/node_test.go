package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/atomicfile"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/internal/tlsconf/tlstest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/node"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// The node serves the Go runtime's and the process's metrics under the same
// names as the collector, so one dashboard reads both.
func TestNodeHasTheCollectorsProcessMetrics(t *testing.T) {
	// Opening a node reaches neither the engine nor the collector.
	eng, cfg := offlineNode(t, "node-1")
	n, err := node.Open(node.Options{Config: cfg, Token: "token", Engine: eng, NoCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}()
	want := prometheus.NewRegistry()
	if err := collector.RegisterProcessMetrics(want); err != nil {
		t.Fatal(err)
	}
	got := families(t, n.Registry())
	for name := range families(t, want) {
		if !got[name] {
			t.Errorf("the node's registry lacks %s", name)
		}
	}
}

// offlineNode returns what opening the node name takes without Docker: an
// engine client for a socket that does not exist, which Open does not dial,
// and a configuration with a spool of its own and a free admin port.
func offlineNode(t *testing.T, name string) (*docker.Engine, agent.Config) {
	t.Helper()
	eng, err := docker.New("unix:///nonexistent/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	cfg := agent.DefaultConfig()
	cfg.Node, cfg.SpoolDir, cfg.AdminListen = name, t.TempDir(), "127.0.0.1:0"
	return eng, cfg
}

func families(t *testing.T, g prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// idleEngine is an engine with no containers and no events: the node's
// agent runs on it without Docker.
type idleEngine struct{}

func (idleEngine) List(context.Context) ([]engine.Container, error) { return nil, nil }
func (idleEngine) Inspect(context.Context, string) (engine.Container, error) {
	return engine.Container{}, errors.New("no such container")
}
func (idleEngine) Stats(context.Context, string) (engine.Stats, error) {
	return engine.Stats{}, errors.New("no such container")
}
func (idleEngine) Volumes(context.Context) ([]engine.Volume, error) { return nil, nil }
func (idleEngine) Events(ctx context.Context, _ time.Time) (<-chan engine.Event, <-chan error) {
	errs := make(chan error, 1)
	context.AfterFunc(ctx, func() { errs <- ctx.Err() })
	return make(chan engine.Event), errs
}

// A node ships to an https collector with its client certificate and no
// token, its records land as its node's, and shipping goes on when the
// collector's certificate, the nodes' CA and the node's certificate are
// rotated under both running; its admin listener serves TLS and the
// expiry of what it presents and trusts.
func TestNodeShipsOverMutualTLSThroughARotation(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	serverCA, nodeCA := tlstest.NewCA(t, dir, "servers"), tlstest.NewCA(t, dir, "nodes")
	server := serverCA.Server(t, dir, "collector")
	agentDir := filepath.Join(dir, "agent")
	nodeA := nodeCA.Node(t, agentDir, "node-a")

	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	authn, err := auth.NewAuthenticator(nil, auth.CertificateConfig{Node: "node-a", Tenants: []string{"caami"}})
	if err != nil {
		t.Fatal(err)
	}
	cc := collector.DefaultConfig()
	cc.Listen, cc.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cc.TLS = tlsconf.ServerConfig{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: nodeCA.CertFile}
	srv, err := collector.New(collector.Options{Config: cc, Store: st, Auth: authn, Institutions: institution.Of("caami"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apiAddr := make(chan net.Addr, 1)
	colDone := make(chan error, 1)
	go func() { colDone <- srv.Run(ctx, func(api, _ net.Addr) { apiAddr <- api }) }()
	api := <-apiAddr

	eng, cfg := offlineNode(t, "node-a")
	cfg.CollectorURL = "https://" + api.String()
	cfg.Logs.Enabled = false // the tailer reads the engine itself, and there is none
	cfg.TLS = tlsconf.ClientConfig{CAFile: serverCA.CertFile, CertFile: nodeA.CertFile, KeyFile: nodeA.KeyFile, ServerName: "localhost"}
	adminPair := serverCA.Server(t, agentDir, "agent-admin")
	cfg.AdminTLS = tlsconf.ServerConfig{CertFile: adminPair.CertFile, KeyFile: adminPair.KeyFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(node.Options{Config: cfg, Engine: eng, NoCgroups: true, Logger: quiet, ShipIdle: 10 * time.Millisecond,
		WrapEngine: func(engine.Engine) engine.Engine { return idleEngine{} }})
	if err != nil {
		t.Fatal(err)
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(ctx, false) }()

	first := 0
	shipAndWait := func(count int) {
		t.Helper()
		for i := range count {
			r := usagetest.Record("caami", fmt.Sprintf("c%03d", first+i), usage.MeterCPU, time.Now().Add(-10*time.Minute).Truncate(time.Minute), 1)
			r.Node = "node-a"
			r.SetID()
			b, _ := json.Marshal(r)
			if _, err := n.Spool().Append(ship.KindUsage, b); err != nil {
				t.Fatal(err)
			}
		}
		first += count
		deadline := time.Now().Add(30 * time.Second)
		for stored(t, st) < first {
			if n.Dead().Stats().Entries > 0 || time.Now().After(deadline) {
				t.Fatalf("%d of %d records stored (dead letters: %d)", stored(t, st), first, n.Dead().Stats().Entries)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	shipAndWait(3)

	newCA := tlstest.NewCA(t, t.TempDir(), "nodes-2")
	b, err := os.ReadFile(newCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(nodeCA.CertFile, b); err != nil {
		t.Fatal(err)
	}
	newCA.Node(t, agentDir, "node-a")
	serverCA.Server(t, dir, "collector")
	shipAndWait(3)

	// The admin listener speaks TLS, and says when the certificates expire.
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Get("https://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`listener="collector",subject="CN=servers"} `, `kind="served",listener="collector",subject="CN=node-a"`,
		`kind="served",listener="admin",subject="CN=agent-admin"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the node's /metrics lacks %s", want)
		}
	}
	cancel()
	if err := errors.Join(<-nodeDone, <-colDone, n.Close()); err != nil {
		t.Error(err)
	}
}

func stored(t *testing.T, st metering.Store) int {
	t.Helper()
	count := 0
	err := st.ScanUsage(context.Background(), metering.UsageFilter{Tenant: "caami", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)},
		func(r usage.Record) error {
			if r.Node != "node-a" {
				t.Errorf("a record of node %q", r.Node)
			}
			count++
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return count
}
