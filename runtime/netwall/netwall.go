// Package netwall keeps the institutions' networks on a node apart, and
// watches that they stay so.
//
// Docker isolates its bridge networks from each other by rules in its
// DOCKER-ISOLATION chains, which it writes when it starts or makes a network.
// Anything else that writes the host's firewall can take them away: a second
// dockerd on the same host rewrites the chains, a firewall reload flushes them,
// and one institution's containers then reach another's. So the node keeps
// its own wall beside Docker's, in the chain Docker leaves to the host's
// administrator (DOCKER-USER, which FORWARD jumps to before any of Docker's
// rules): one DROP rule per ordered pair of institution bridges, marked with
// Comment. Every check reads the chain, puts back what is missing, and reports
// per network whether the wall stands.
//
// A rule is counted as restored when it went missing after this process saw
// it in place (or put it there), and so is FORWARD's jump to DOCKER-USER,
// which Docker always makes: both mean something rewrote the firewall. The
// rules of a network the wall has not walled yet (a new institution, the
// agent's first check on a node) are put in place without being counted.
package netwall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/network"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	// Chain is where the wall's rules live: Docker creates it, jumps to it
	// first from FORWARD, and never writes rules into it.
	Chain = "DOCKER-USER"
	// Comment marks the wall's rules, so an operator (and the wall) tells
	// them from the administrator's own.
	Comment = "paasmeter-netwall"
)

// Network is one institution's network on the node.
type Network struct {
	// Name is the Docker network's name (the metrics' network label).
	Name string
	// Bridge is its bridge interface on the host (br-<id>).
	Bridge string
}

// Bridge is the host interface of a Docker bridge network: the one its
// com.docker.network.bridge.name option names, else br- and the start of its id.
func Bridge(in network.Inspect) string {
	if b := in.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	return "br-" + in.ID[:min(12, len(in.ID))]
}

// Runner runs iptables with args and returns what it printed.
type Runner func(ctx context.Context, args ...string) ([]byte, error)

// IPTables runs the host's iptables, waiting for the xtables lock rather
// than failing when dockerd holds it.
func IPTables(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Options are what a Wall is built from.
type Options struct {
	// Run runs iptables (default IPTables).
	Run    Runner
	Logger *slog.Logger
	// Registry receives the wall's metrics (nil: not exported).
	Registry prometheus.Registerer
}

// Wall checks and restores the rules that keep networks apart.
type Wall struct {
	run      Runner
	log      *slog.Logger
	ok       *prometheus.GaugeVec
	restored *prometheus.CounterVec

	// mu makes checks one at a time.
	mu sync.Mutex
	// known holds the (in, out) bridge pairs whose rule this process saw in
	// place or put there: one of them missing is a restoration.
	known map[[2]string]bool
}

// New builds a Wall.
func New(o Options) (*Wall, error) {
	w := &Wall{run: o.Run, log: o.Logger, known: map[[2]string]bool{},
		ok: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_runtime_network_isolation_ok",
			Help: "1 when the institution network is walled off from every other institution network on the node (the wall's DROP rules in DOCKER-USER, and FORWARD's jump to it), as the last check left it; 0 when a rule is missing and could not be restored."},
			[]string{"network"}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paasmeter_runtime_network_isolation_restorations_total",
			Help: "Rules of the network wall that went missing after the agent saw them in place, put back, by the network whose outgoing traffic they stop (a missing jump from FORWARD to DOCKER-USER counts for every network)."},
			[]string{"network"}),
	}
	if w.run == nil {
		w.run = IPTables
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("component", "netwall")
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{w.ok, w.restored} {
			if err := o.Registry.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// Rule is the wall's rule that drops what goes from bridge in to bridge out,
// as iptables takes it after the chain's name.
func Rule(in, out string) []string {
	return []string{"-i", in, "-o", out, "-m", "comment", "--comment", Comment, "-j", "DROP"}
}

// jump is FORWARD's rule that sends traffic through DOCKER-USER.
var jump = []string{"-j", Chain}

// Check makes sure each of nets is walled off from each other one, puts back
// the rules it finds missing, and sets each network's gauge to whether its
// wall stands afterwards. Fewer than two networks need no wall: iptables is
// not run.
func (w *Wall) Check(ctx context.Context, nets []Network) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ok.Reset()
	if len(nets) < 2 {
		for _, n := range nets {
			w.ok.WithLabelValues(n.Name).Set(1)
		}
		return nil
	}
	broken := map[string]bool{}
	var errs []error
	have, err := w.rules(ctx)
	if err != nil {
		for _, n := range nets {
			w.ok.WithLabelValues(n.Name).Set(0)
		}
		return fmt.Errorf("netwall: read the rules: %w", err)
	}
	if !have.jump {
		w.log.Error("FORWARD no longer jumps to DOCKER-USER (a firewall reload or another dockerd rewrote it): putting the jump back")
		if err := w.restore(ctx, "FORWARD", jump); err != nil {
			errs = append(errs, err)
			for _, n := range nets {
				broken[n.Name] = true
			}
		} else {
			for _, n := range nets {
				w.restored.WithLabelValues(n.Name).Inc()
			}
		}
	}
	// Pairs of networks gone are forgotten.
	known := map[[2]string]bool{}
	for _, a := range nets {
		for _, b := range nets {
			pair := [2]string{a.Bridge, b.Bridge}
			if a.Bridge == b.Bridge {
				continue
			}
			if have.drops[pair] {
				known[pair] = true
				continue
			}
			if w.known[pair] {
				w.log.Error("the rule keeping two institution networks apart is gone (a firewall reload or another dockerd removed it): putting it back",
					"from", a.Name, "to", b.Name, "from_bridge", a.Bridge, "to_bridge", b.Bridge)
			} else {
				w.log.Info("walling off two institution networks", "from", a.Name, "to", b.Name, "from_bridge", a.Bridge, "to_bridge", b.Bridge)
			}
			if err := w.restore(ctx, Chain, Rule(a.Bridge, b.Bridge)); err != nil {
				errs = append(errs, err)
				broken[a.Name], broken[b.Name] = true, true
				known[pair] = w.known[pair]
				continue
			}
			if w.known[pair] {
				w.restored.WithLabelValues(a.Name).Inc()
			}
			known[pair] = true
		}
	}
	w.known = known
	for _, n := range nets {
		v := 1.0
		if broken[n.Name] {
			v = 0
		}
		w.ok.WithLabelValues(n.Name).Set(v)
	}
	return errors.Join(errs...)
}

// found is what the wall found of its rules.
type found struct {
	// jump: FORWARD jumps to DOCKER-USER.
	jump bool
	// drops holds the (in, out) bridge pairs the wall's rules drop.
	drops map[[2]string]bool
}

func (w *Wall) rules(ctx context.Context) (found, error) {
	user, err := w.run(ctx, "-S", Chain)
	if err != nil {
		// A flushed firewall may have lost the chain itself.
		if _, nerr := w.run(ctx, "-N", Chain); nerr != nil {
			return found{}, errors.Join(err, nerr)
		}
		user = nil
	}
	fwd, err := w.run(ctx, "-S", "FORWARD")
	if err != nil {
		return found{}, err
	}
	return found{jump: Jumps(fwd), drops: Drops(user)}, nil
}

// restore inserts rule at the head of chain, ahead of anything that would
// accept the traffic first.
func (w *Wall) restore(ctx context.Context, chain string, rule []string) error {
	if _, err := w.run(ctx, append([]string{"-I", chain, "1"}, rule...)...); err != nil {
		return fmt.Errorf("netwall: restore %s %s: %w", chain, strings.Join(rule, " "), err)
	}
	return nil
}

// Drops reads `iptables -S DOCKER-USER` and returns the (in, out) bridge
// pairs the wall's rules drop; every other line is someone else's and
// ignored.
func Drops(listing []byte) map[[2]string]bool {
	out := map[[2]string]bool{}
	for _, line := range strings.Split(string(listing), "\n") {
		f := strings.Fields(line)
		if len(f) != 2+len(Rule("", "")) || f[0] != "-A" || f[1] != Chain {
			continue
		}
		if strings.Join(f[2:], " ") == strings.Join(Rule(f[3], f[5]), " ") {
			out[[2]string{f[3], f[5]}] = true
		}
	}
	return out
}

// Jumps reads `iptables -S FORWARD` and reports whether it jumps to
// DOCKER-USER unconditionally.
func Jumps(listing []byte) bool {
	want := strings.Join(append([]string{"-A", "FORWARD"}, jump...), " ")
	for _, line := range strings.Split(string(listing), "\n") {
		if strings.Join(strings.Fields(line), " ") == want {
			return true
		}
	}
	return false
}
