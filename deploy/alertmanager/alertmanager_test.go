// Package alertmanager_test checks alertmanager.yml with the tool that ships
// with the Alertmanager that loads it: amtool, from Debian's
// prometheus-alertmanager package, which `make test` installs.
package alertmanager_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/internal/testenv"
)

const config = "alertmanager.yml"

// amtool finds amtool. Without it the test fails under CI=true, where
// `make test` must have installed it, and is skipped elsewhere.
func amtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("amtool")
	if err != nil {
		msg := "amtool not found: run `make test` as root (it installs Debian's prometheus-alertmanager package)"
		testenv.Missing(t, msg)
	}
	return path
}

func TestTheConfigurationPassesAmtoolCheckConfig(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(amtool(t), "check-config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config %s: %v\n%s", config, err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("amtool check-config %s did not report SUCCESS:\n%s", config, out)
	}
}

// TestAlertsAreRoutedBySeverityAndInstitution resolves the receivers of
// example label sets with amtool's routing tree, as Alertmanager would.
func TestAlertsAreRoutedBySeverityAndInstitution(t *testing.T) {
	t.Parallel()
	bin := amtool(t)
	for _, c := range []struct {
		name   string
		labels []string
		want   string
	}{
		{"a page goes to on-call", []string{"alertname=PaasmeterAgentDown", "severity=page", "node=node1"}, "oncall"},
		{"a ticket goes to the ticket queue", []string{"alertname=PaasmeterContainerOOMKilled", "severity=ticket", "tenant=kul"}, "ticket"},
		{"an institution with its own route gets its alerts and on-call still gets the page", []string{"alertname=PaasmeterSLOErrorBudgetBurnPage", "severity=page", "tenant=ulb"}, "tenant-ulb,oncall"},
		{"an institution with its own route gets its tickets too", []string{"alertname=PaasmeterInstitutionNearQuota", "severity=ticket", "tenant=ulb"}, "tenant-ulb,ticket"},
		{"an alert without severity falls back to the ticket queue", []string{"alertname=Unknown"}, "ticket"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"config", "routes", "test", "--config.file=" + config, "--verify.receivers=" + c.want}, c.labels...)
			out, err := exec.Command(bin, args...).Output()
			if err != nil {
				t.Fatalf("amtool %s: %v; resolved receivers %q, want %q", strings.Join(args, " "), err, strings.TrimSpace(string(out)), c.want)
			}
		})
	}
}
