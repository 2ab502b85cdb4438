// Package collectortest runs a real collector for the tests and benchmarks of
// its clients (the agent, the shipper): an embedded store in a directory, one
// agent token, loopback HTTP.
package collectortest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// Collector is a running collector.
type Collector struct {
	// URL is the base URL of the tenants' listener.
	URL   string
	Store metering.Store
	api   *httptest.Server
}

// Start runs a collector over a fresh embedded store in dir that accepts
// records of tenants from the agent with token, bound to node and to those
// tenants.
func Start(dir, node, token string, tenants ...string) (*Collector, error) {
	return StartBehind(nil, dir, node, token, tenants...)
}

// StartBehind is Start with front, when not nil, before the collector's
// handler: a test's way to interfere with requests (answer 503, drop the
// connection) or to look at them.
func StartBehind(front func(http.Handler) http.Handler, dir, node, token string, tenants ...string) (*Collector, error) {
	st, err := embedded.Open(context.Background(), dir)
	if err != nil {
		return nil, err
	}
	authn, err := auth.NewAuthenticator([]auth.TokenConfig{{Name: "agent", Role: auth.RoleAgent, Node: node, Tenants: tenants, SHA256: auth.Hash(token)}})
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := collector.New(collector.Options{Config: collector.DefaultConfig(), Store: st, Auth: authn, Institutions: institution.Of(tenants...),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		st.Close()
		return nil, err
	}
	h := srv.Handler()
	if front != nil {
		h = front(h)
	}
	api := httptest.NewServer(h)
	return &Collector{URL: api.URL, Store: st, api: api}, nil
}

// Close stops the collector and closes its store.
func (c *Collector) Close() {
	c.api.Close()
	c.Store.Close()
}
