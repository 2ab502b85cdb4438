package netwall_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/netwall"
)

// TestTheWallStandsWhenTheFirewallLosesDockersRules is the regression test
// of a second dockerd that took Docker's isolation rules away: caami's
// container then reached ona's app. The test takes away, for its own two
// bridges only (the engine and the firewall are shared with other tests),
// Docker's isolation rules and the wall's, sees caami reach ona, and sees the
// wall's check put the wall back and caami no longer reach ona.
func TestTheWallStandsWhenTheFirewallLosesDockersRules(t *testing.T) {
	t.Parallel()
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	ctx := context.Background()
	var nets []netwall.Network
	for _, inst := range []string{"caami", "ona"} {
		name := dockertest.Name(t, "net-"+inst)
		if _, err := cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge"}); err != nil {
			t.Fatal(err)
		}
		in, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := netwall.Network{Name: name, Bridge: netwall.Bridge(in)}
		nets = append(nets, n)
		t.Cleanup(func() {
			dropWallRules(t, n.Bridge)
			if err := cli.NetworkRemove(context.Background(), name); err != nil {
				t.Errorf("remove network %s: %v", name, err)
			}
		})
	}
	client := run(t, cli, img, nets[0].Name, "exec sleep 3600")
	web := run(t, cli, img, nets[1].Name, "mkdir -p /tmp/www && echo ok > /tmp/www/healthz && exec httpd -f -p 8080 -h /tmp/www")
	in, err := cli.ContainerInspect(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	ip := in.NetworkSettings.Networks[nets[1].Name].IPAddress
	reaches := func() bool {
		// (busybox-static's wget crashes on lookups; nc speaks the HTTP here.)
		return dockertest.Exec(t, cli, client, "sh", "-c", "printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc -w 2 "+ip+" 8080 | grep -q '200 OK'") == 0
	}
	if reaches() {
		t.Fatalf("caami's container reached ona's app at %s with Docker's isolation in place", ip)
	}

	// The wall as a node keeps it, up before the firewall loses its rules.
	reg := prometheus.NewRegistry()
	w, err := netwall.New(netwall.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(ctx, nets); err != nil {
		t.Fatal(err)
	}

	// What a second dockerd or a firewall reload does, to these two bridges.
	for _, n := range nets {
		dropDockerIsolation(t, n.Bridge)
		dropWallRules(t, n.Bridge)
	}
	dockertest.Eventually(t, 20*time.Second, "caami's container never reached ona's app once the isolation rules were gone: the test does not take away what isolates them", reaches)

	// A wall that cannot write the firewall says so.
	refusedReg := prometheus.NewRegistry()
	refusing, err := netwall.New(netwall.Options{Registry: refusedReg, Run: func(ctx context.Context, args ...string) ([]byte, error) {
		if args[0] == "-I" {
			return nil, context.DeadlineExceeded
		}
		return netwall.IPTables(ctx, args...)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := refusing.Check(ctx, nets); err == nil {
		t.Error("a check that could not restore the wall returned no error")
	}
	for _, n := range nets {
		if v := promtest.Value(t, refusedReg, "paasmeter_runtime_network_isolation_ok", map[string]string{"network": n.Name}); v != 0 {
			t.Errorf("%s: isolation_ok %v with the wall down, want 0", n.Name, v)
		}
	}

	if err := w.Check(ctx, nets); err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if v := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_ok", map[string]string{"network": n.Name}); v != 1 {
			t.Errorf("%s: isolation_ok %v after the check, want 1", n.Name, v)
		}
		if v := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_restorations_total", map[string]string{"network": n.Name}); v < 1 {
			t.Errorf("%s: %v restorations, want at least 1", n.Name, v)
		}
	}
	if reaches() {
		t.Errorf("caami's container still reaches ona's app at %s after the wall was restored", ip)
	}
	// The wall is there once: a second check restores nothing.
	before := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_restorations_total", map[string]string{"network": nets[0].Name})
	if err := w.Check(ctx, nets); err != nil {
		t.Fatal(err)
	}
	if after := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_restorations_total", map[string]string{"network": nets[0].Name}); after != before {
		t.Errorf("a check of a standing wall restored %v rules", after-before)
	}
}

// run starts a busybox container on net running script, removed at the end.
func run(t *testing.T, cli *client.Client, img, net, script string) string {
	t.Helper()
	ctx := context.Background()
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sh", "-c", script}},
		&container.HostConfig{NetworkMode: container.NetworkMode(net)}, nil, nil, dockertest.Name(t, "wall"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// rulesOn lists the rules of the chains whose name starts with prefix that
// name bridge as an interface, as `iptables -D` takes them.
func rulesOn(t *testing.T, prefix, bridge string) [][]string {
	t.Helper()
	out, err := netwall.IPTables(context.Background(), "-S")
	if err != nil {
		t.Fatal(err)
	}
	var rules [][]string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "-A" && strings.HasPrefix(f[1], prefix) && (slices.Contains(f, bridge)) {
			rules = append(rules, f[1:])
		}
	}
	return rules
}

func dropDockerIsolation(t *testing.T, bridge string) {
	t.Helper()
	rules := rulesOn(t, "DOCKER-ISOLATION", bridge)
	if len(rules) == 0 {
		t.Fatalf("Docker wrote no isolation rule for %s", bridge)
	}
	for _, r := range rules {
		if _, err := netwall.IPTables(context.Background(), append([]string{"-D"}, r...)...); err != nil {
			t.Fatal(err)
		}
	}
}

// dropWallRules removes the wall's rules to and from bridge.
func dropWallRules(t *testing.T, bridge string) {
	t.Helper()
	for _, r := range rulesOn(t, netwall.Chain, bridge) {
		if strings.Contains(strings.Join(r, " "), netwall.Comment) {
			if _, err := netwall.IPTables(context.Background(), append([]string{"-D"}, r...)...); err != nil {
				t.Error(err)
			}
		}
	}
}
