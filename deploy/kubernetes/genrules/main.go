// Command genrules writes deploy/kubernetes/monitoring/prometheusrule.yaml
// from deploy/prometheus/rules/*.rules.yml. `go generate ./deploy/kubernetes`
// runs it in that package's directory, which the paths are relative to.
package main

import (
	"fmt"
	"os"

	"github.com/paasmeter/paasmeter/deploy/kubernetes"
)

func main() {
	b, err := kubernetes.PrometheusRule(kubernetes.RulesDir)
	if err == nil {
		err = os.WriteFile(kubernetes.PrometheusRuleFile, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genrules:", err)
		os.Exit(1)
	}
}
