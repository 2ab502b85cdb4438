package supervise_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/netwall"
	"github.com/paasmeter/paasmeter/runtime/nodetest"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/supervise"
)

// TestTheNodePutsBackTheNetworkWallItFindsGone runs the wall as the node
// runs it: every sampling period, over the networks its supervisor made. The
// wall's rules for the test's own two networks (the firewall is shared with
// other tests) are taken away, and the node puts them back. The wall holding
// the networks apart once Docker's own rules are gone is
// runtime/netwall's TestTheWallStandsWhenTheFirewallLosesDockersRules.
func TestTheNodePutsBackTheNetworkWallItFindsGone(t *testing.T) {
	t.Parallel()
	a, b := "wall-caami", "wall-ona"
	s, err := spec.Parse([]byte(platformYAML(a, app("idle", "prod", "exec sleep 3600"))+
		strings.TrimPrefix(platformYAML(b, app("idle", "prod", "exec sleep 3600")), "institutions:\n")), "wall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bridges := map[string]string{}
	rules := func() [][]string {
		return [][]string{netwall.Rule(bridges[a], bridges[b]), netwall.Rule(bridges[b], bridges[a])}
	}
	// Registered before the node starts, so it runs once the node stopped:
	// the wall's rules for these networks do not outlive the test.
	t.Cleanup(func() {
		if len(bridges) == 2 {
			for _, r := range rules() {
				// A rule already gone is as good as removed.
				netwall.IPTables(context.Background(), append([]string{"-D", netwall.Chain}, r...)...)
			}
		}
	})
	n := nodetest.Start(t, nodetest.Options{Sample: time.Second, Window: time.Minute, Tenants: []string{a, b}, Platform: s})
	ok := func(inst string) float64 {
		return promtest.Value(t, n.Reg, "paasmeter_runtime_network_isolation_ok", map[string]string{"network": supervise.Network(inst)})
	}
	dockertest.Eventually(t, 30*time.Second, "the node never reported both networks walled off", func() bool { return ok(a) == 1 && ok(b) == 1 })
	for _, inst := range []string{a, b} {
		in, err := n.Cli.NetworkInspect(context.Background(), supervise.Network(inst), network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bridges[inst] = netwall.Bridge(in)
	}
	walled := func() bool {
		out, err := netwall.IPTables(context.Background(), "-S", netwall.Chain)
		if err != nil {
			t.Fatal(err)
		}
		d := netwall.Drops(out)
		return d[[2]string{bridges[a], bridges[b]}] && d[[2]string{bridges[b], bridges[a]}]
	}
	if !walled() {
		t.Fatalf("the node reports the wall standing, but DOCKER-USER lacks its rules for %v", bridges)
	}
	before := promtest.Value(t, n.Reg, "paasmeter_runtime_network_isolation_restorations_total", map[string]string{"network": supervise.Network(a)})
	// A firewall reload, as far as these two networks go.
	for _, r := range rules() {
		if _, err := netwall.IPTables(context.Background(), append([]string{"-D", netwall.Chain}, r...)...); err != nil {
			t.Fatal(err)
		}
	}
	dockertest.Eventually(t, 30*time.Second, "the node did not put the wall back", func() bool {
		return walled() && promtest.Value(t, n.Reg, "paasmeter_runtime_network_isolation_restorations_total",
			map[string]string{"network": supervise.Network(a)}) > before
	})
}
