// Package systemd_test checks the systemd units of deploy/systemd: each sets
// the hardening the deployment relies on, and systemd itself accepts them.
package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/internal/testenv"
)

// units are the unit files, each with what it grants beyond the common
// hardening: the agent runs iptables for the network wall (runtime/netwall).
var units = map[string][]string{
	"paasmeter-collector.service": {"CapabilityBoundingSet=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"},
	"paasmeter-agent.service":     {"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"},
}

// hardening is what every unit must set, as "key=value" (the last value of
// a repeated key counts, as in systemd, except SystemCallFilter, which
// accumulates and is checked for its first value).
var hardening = []string{
	"StateDirectoryMode=0700", "UMask=0077",
	"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
	"ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes",
	"LockPersonality=yes", "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
}

// service returns the [Service] settings of a unit file.
func service(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = append(out[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnitsSetTheHardening(t *testing.T) {
	for u, grants := range units {
		s := service(t, u)
		for _, kv := range append(grants, hardening...) {
			k, want, _ := strings.Cut(kv, "=")
			vs := s[k]
			got := ""
			if len(vs) > 0 {
				got = vs[len(vs)-1]
				if k == "SystemCallFilter" {
					got = vs[0]
				}
			}
			if len(vs) == 0 || got != want {
				t.Errorf("%s: %s is %q, want %q", u, k, got, want)
			}
		}
		if s["StateDirectory"] == nil || s["User"] == nil || s["User"][0] == "root" {
			t.Errorf("%s: want a StateDirectory and a User other than root", u)
		}
	}
}

// TestSystemdAcceptsTheUnits runs systemd-analyze verify (any warning, such
// as an unknown key, fails) and its offline security score on the units,
// with ExecStart pointed at an executable that exists here.
func TestSystemdAcceptsTheUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze is not installed: the units are not checked by systemd (scripts/test-deps.sh installs the systemd package)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/paasmeter", self)), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The offline score (systemd 250 and later): exposure 2.5 of 10 at most.
	if help, _ := exec.Command(analyze, "security", "--help").CombinedOutput(); !strings.Contains(string(help), "--offline") {
		t.Logf("this systemd-analyze has no offline security score: the exposure is not checked")
		return
	}
	for _, p := range paths {
		if out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=25", "--no-pager", p).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze security %s: exposure over 2.5 (%v):\n%s", filepath.Base(p), err, out)
		}
	}
}
