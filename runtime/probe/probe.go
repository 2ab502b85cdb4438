// Package probe checks one replica the way its spec says, from outside the
// container: an HTTP request or a TCP connection from the agent to the
// replica's address on its institution's network, or a command run in it
// through the engine. Its results become probe events, the raw material of
// the SLA (DESIGN.md §3, §6).
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/runtime/spec"
)

// Execer runs a command in a running container and returns its exit code.
// The supervisor's Docker client provides it.
type Execer interface {
	Exec(ctx context.Context, containerID string, cmd []string) (exitCode int, err error)
}

// Target is one replica to probe.
type Target struct {
	ContainerID string
	// IP is the replica's address on its institution's network.
	IP     string
	Health spec.Health
}

// Prober runs probes. Its HTTP client never follows redirects (a 3xx passes,
// as in Kubernetes) and never reuses a connection, so each probe tests that
// the replica accepts a new one.
type Prober struct {
	client *http.Client
	exec   Execer
}

// New returns a Prober; exec may be nil when no spec uses exec probes.
func New(exec Execer) *Prober {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	return &Prober{
		exec: exec,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// Check probes t once, within t.Health.Timeout, and says how it went. A probe
// that cannot be run (no address, no execer) fails with the reason as detail:
// the replica was not shown healthy.
func (p *Prober) Check(ctx context.Context, t Target) events.ProbeResult {
	h := t.Health
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	start := time.Now()
	var kind string
	var err error
	switch {
	case h.HTTP != nil:
		kind, err = "http", p.http(ctx, t.IP, h.HTTP)
	case h.TCP != nil:
		kind, err = "tcp", tcp(ctx, t.IP, h.TCP.Port)
	default:
		kind, err = "exec", p.execute(ctx, t.ContainerID, h.Exec)
	}
	res := events.ProbeResult{OK: err == nil, Kind: kind, LatencyNs: time.Since(start).Nanoseconds()}
	if err != nil {
		res.Detail = detail(ctx, err, h.Timeout)
	}
	return res
}

func (p *Prober) http(ctx context.Context, ip string, hp *spec.HTTPProbe) error {
	if ip == "" {
		return errors.New("the replica has no address on its network")
	}
	url := "http://" + net.JoinHostPort(ip, strconv.Itoa(hp.Port)) + hp.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "paasmeter-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s answered %d", hp.Path, resp.StatusCode)
	}
	return nil
}

func tcp(ctx context.Context, ip string, port int) error {
	if ip == "" {
		return errors.New("the replica has no address on its network")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return c.Close()
}

func (p *Prober) execute(ctx context.Context, id string, cmd []string) error {
	if p.exec == nil {
		return errors.New("exec probes are not available on this node")
	}
	code, err := p.exec.Exec(ctx, id, cmd)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s exited with %d", cmd[0], code)
	}
	return nil
}

// detail is the short reason a probe failed, at most what an event carries.
func detail(ctx context.Context, err error, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "no answer within " + timeout.String()
	}
	s := err.Error()
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}
