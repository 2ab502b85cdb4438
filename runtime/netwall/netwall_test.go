package netwall_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/runtime/netwall"
)

// fakeTables is a firewall in memory: the rules of DOCKER-USER and FORWARD as
// `iptables -S` prints them, and what the wall inserted.
type fakeTables struct {
	user, forward []string
	inserts       [][]string
	refuse        bool
}

func (f *fakeTables) run(_ context.Context, args ...string) ([]byte, error) {
	switch {
	case slices.Equal(args, []string{"-S", netwall.Chain}):
		return []byte(strings.Join(append([]string{"-N " + netwall.Chain}, f.user...), "\n") + "\n"), nil
	case slices.Equal(args, []string{"-S", "FORWARD"}):
		return []byte(strings.Join(append([]string{"-P FORWARD DROP"}, f.forward...), "\n") + "\n"), nil
	case len(args) > 3 && args[0] == "-I" && args[2] == "1":
		if f.refuse {
			return nil, errors.New("permission denied")
		}
		f.inserts = append(f.inserts, args)
		line := strings.Join(append([]string{"-A", args[1]}, args[3:]...), " ")
		if args[1] == "FORWARD" {
			f.forward = append([]string{line}, f.forward...)
		} else {
			f.user = append([]string{line}, f.user...)
		}
		return nil, nil
	}
	return nil, errors.New("unexpected iptables " + strings.Join(args, " "))
}

var three = []netwall.Network{{Name: "pm-net-caami", Bridge: "br-a"}, {Name: "pm-net-ona", Bridge: "br-o"}, {Name: "pm-net-slatest", Bridge: "br-s"}}

func TestCheckRestoresEveryMissingRuleOnceAndOnlyThose(t *testing.T) {
	f := &fakeTables{
		forward: []string{"-A FORWARD -j DOCKER-ISOLATION-STAGE-1"},
		user: []string{
			"-A DOCKER-USER -i br-a -o br-o -m comment --comment paasmeter-netwall -j DROP",
			// Not the wall's: another comment, or an ACCEPT.
			"-A DOCKER-USER -i br-o -o br-a -m comment --comment mine -j DROP",
			"-A DOCKER-USER -i br-s -o br-a -j ACCEPT",
			"-A DOCKER-USER -j RETURN",
		},
	}
	reg := prometheus.NewRegistry()
	w, err := netwall.New(netwall.Options{Run: f.run, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(context.Background(), three); err != nil {
		t.Fatal(err)
	}
	// The jump, and 5 of the 6 ordered pairs.
	if len(f.inserts) != 6 || !slices.Equal(f.inserts[0], []string{"-I", "FORWARD", "1", "-j", "DOCKER-USER"}) {
		t.Fatalf("inserted %q, want the jump then 5 drops", f.inserts)
	}
	for _, n := range three {
		if v := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_ok", map[string]string{"network": n.Name}); v != 1 {
			t.Errorf("%s: isolation_ok %v after the restore, want 1", n.Name, v)
		}
	}
	// Only the jump was restored: Docker always makes it. The drops are the
	// wall's first: put in place, not restored.
	restored := func() map[string]float64 {
		out := map[string]float64{}
		for _, n := range three {
			out[n.Name] = promtest.Value(t, reg, "paasmeter_runtime_network_isolation_restorations_total", map[string]string{"network": n.Name})
		}
		return out
	}
	if got := restored(); !maps.Equal(got, map[string]float64{"pm-net-caami": 1, "pm-net-ona": 1, "pm-net-slatest": 1}) {
		t.Errorf("restorations after the first check: %v, want the jump's alone", got)
	}
	// A firewall reload takes two of the wall's rules away.
	f.user = slices.DeleteFunc(f.user, func(l string) bool {
		return strings.Contains(l, "-i br-a -o br-o ") || strings.Contains(l, "-i br-s -o br-a ")
	})
	f.inserts = nil
	if err := w.Check(context.Background(), three); err != nil || len(f.inserts) != 2 {
		t.Fatalf("the second check inserted %q (err %v), want the 2 rules taken away", f.inserts, err)
	}
	if got := restored(); !maps.Equal(got, map[string]float64{"pm-net-caami": 2, "pm-net-ona": 1, "pm-net-slatest": 2}) {
		t.Errorf("restorations after the reload: %v, want one more for caami's and slatest's outgoing rule", got)
	}
	f.inserts = nil
	if err := w.Check(context.Background(), three); err != nil || len(f.inserts) != 0 {
		t.Errorf("a check of a standing wall inserted %q (err %v), want nothing", f.inserts, err)
	}
}

func TestCheckReportsAWallItCannotRestore(t *testing.T) {
	f := &fakeTables{forward: []string{"-A FORWARD -j DOCKER-USER"}, refuse: true,
		user: []string{"-A DOCKER-USER -i br-a -o br-o -m comment --comment paasmeter-netwall -j DROP",
			"-A DOCKER-USER -i br-o -o br-a -m comment --comment paasmeter-netwall -j DROP"}}
	reg := prometheus.NewRegistry()
	w, err := netwall.New(netwall.Options{Run: f.run, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(context.Background(), three); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("check: %v, want the refused insert", err)
	}
	// Every network's wall misses a rule to or from slatest.
	for _, n := range three {
		if v := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_ok", map[string]string{"network": n.Name}); v != 0 {
			t.Errorf("%s: isolation_ok %v, want 0", n.Name, v)
		}
	}
	// One network alone needs no wall, and no iptables.
	if err := w.Check(context.Background(), three[:1]); err != nil {
		t.Fatal(err)
	}
	if v := promtest.Value(t, reg, "paasmeter_runtime_network_isolation_ok", map[string]string{"network": "pm-net-caami"}); v != 1 {
		t.Errorf("a lone network: isolation_ok %v, want 1", v)
	}
}

func TestDropsAndJumpsReadOnlyTheWallsOwnRules(t *testing.T) {
	listing := "-N DOCKER-USER\n" +
		"-A DOCKER-USER -i br-a -o br-o -m comment --comment paasmeter-netwall -j DROP\n" +
		"-A DOCKER-USER  -i br-o   -o br-a -m comment --comment paasmeter-netwall -j DROP\r\n" +
		"-A DOCKER-USER -i br-a -o br-s -m comment --comment paasmeter-netwall -j ACCEPT\n" +
		"-A DOCKER-USER -i br-a -o br-s -m comment --comment \"paasmeter netwall\" -j DROP\n" +
		"-A FORWARD -i br-s -o br-a -m comment --comment paasmeter-netwall -j DROP\n"
	got := netwall.Drops([]byte(listing))
	want := map[[2]string]bool{{"br-a", "br-o"}: true, {"br-o", "br-a"}: true}
	if len(got) != len(want) || !got[[2]string{"br-a", "br-o"}] || !got[[2]string{"br-o", "br-a"}] {
		t.Errorf("Drops = %v, want %v", got, want)
	}
	if !netwall.Jumps([]byte("-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n")) {
		t.Error("the jump was not found")
	}
	if netwall.Jumps([]byte("-A FORWARD -i br-a -j DOCKER-USER\n-A FORWARD -j DOCKER-USERS\n")) {
		t.Error("a conditional jump, or one to another chain, was taken for the jump")
	}
}

// FuzzDrops feeds Drops and Jumps what iptables might print: they never
// panic, and a rule the wall wrote is always read back.
func FuzzDrops(f *testing.F) {
	f.Add([]byte("-N DOCKER-USER\n-A DOCKER-USER -i br-a -o br-o -m comment --comment paasmeter-netwall -j DROP\n-A DOCKER-USER -j RETURN\n"))
	f.Add([]byte("-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n"))
	f.Add([]byte("-A DOCKER-USER -i -o -m comment --comment paasmeter-netwall -j DROP"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, listing []byte) {
		for pair := range netwall.Drops(listing) {
			if pair[0] == "" || pair[1] == "" {
				t.Fatalf("an empty bridge name read from %q", listing)
			}
		}
		netwall.Jumps(listing)
		ours := append(append([]byte{}, listing...), []byte("\n-A DOCKER-USER "+strings.Join(netwall.Rule("br-x", "br-y"), " ")+"\n")...)
		if !netwall.Drops(ours)[[2]string{"br-x", "br-y"}] {
			t.Fatalf("the wall's own rule was not read back from %q", ours)
		}
	})
}
