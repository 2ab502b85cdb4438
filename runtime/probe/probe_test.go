package probe_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/probe"
	"github.com/paasmeter/paasmeter/runtime/spec"
)

// server answers /healthz with status, after delay.
func server(t *testing.T, status int, delay time.Duration) (ip string, port int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	host, p, _ := net.SplitHostPort(u.Host)
	port, _ = strconv.Atoi(p)
	return host, port
}

type exitCode int

func (e exitCode) Exec(context.Context, string, []string) (int, error) { return int(e), nil }

func TestAProbePassesOrFailsAsItsCheckDoes(t *testing.T) {
	closed := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		return port
	}
	tests := map[string]struct {
		health func() (ip string, h spec.Health)
		exec   probe.Execer
		ok     bool
		kind   string
		detail string
	}{
		"an HTTP check answered 200 passes": {health: func() (string, spec.Health) {
			ip, port := server(t, 200, 0)
			return ip, spec.Health{HTTP: &spec.HTTPProbe{Path: "/healthz", Port: port}}
		}, ok: true, kind: "http"},
		"an HTTP check answered with a redirect passes without following it": {health: func() (string, spec.Health) {
			ip, port := server(t, http.StatusFound, 0)
			return ip, spec.Health{HTTP: &spec.HTTPProbe{Path: "/healthz", Port: port}}
		}, ok: true, kind: "http"},
		"an HTTP check answered 503 fails, saying so": {health: func() (string, spec.Health) {
			ip, port := server(t, 503, 0)
			return ip, spec.Health{HTTP: &spec.HTTPProbe{Path: "/healthz", Port: port}}
		}, kind: "http", detail: "answered 503"},
		"an HTTP check answered after its timeout fails as a timeout": {health: func() (string, spec.Health) {
			ip, port := server(t, 200, 2*time.Second)
			return ip, spec.Health{HTTP: &spec.HTTPProbe{Path: "/healthz", Port: port}}
		}, kind: "http", detail: "no answer within 200ms"},
		"a TCP check of a listening port passes": {health: func() (string, spec.Health) {
			ip, port := server(t, 200, 0)
			return ip, spec.Health{TCP: &spec.TCPProbe{Port: port}}
		}, ok: true, kind: "tcp"},
		"a TCP check of a closed port fails": {health: func() (string, spec.Health) {
			return "127.0.0.1", spec.Health{TCP: &spec.TCPProbe{Port: closed()}}
		}, kind: "tcp", detail: "refused"},
		"a replica without an address fails its network check": {health: func() (string, spec.Health) {
			return "", spec.Health{TCP: &spec.TCPProbe{Port: 80}}
		}, kind: "tcp", detail: "no address"},
		"an exec check exiting 0 passes": {health: func() (string, spec.Health) {
			return "", spec.Health{Exec: []string{"true"}}
		}, exec: exitCode(0), ok: true, kind: "exec"},
		"an exec check exiting 1 fails with its code": {health: func() (string, spec.Health) {
			return "", spec.Health{Exec: []string{"check"}}
		}, exec: exitCode(1), kind: "exec", detail: "check exited with 1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ip, h := tc.health()
			h.Timeout = 200 * time.Millisecond
			res := probe.New(tc.exec).Check(context.Background(), probe.Target{ContainerID: "c1", IP: ip, Health: h})
			if res.OK != tc.ok || res.Kind != tc.kind || !strings.Contains(res.Detail, tc.detail) || (tc.ok && res.Detail != "") {
				t.Errorf("got %+v, want ok=%v kind=%s detail containing %q", res, tc.ok, tc.kind, tc.detail)
			}
			if res.LatencyNs <= 0 {
				t.Errorf("latency %d ns, want it measured", res.LatencyNs)
			}
		})
	}
}
