// Command gen writes the operators' Grafana dashboards to dashboards/*.json.
// Run it from the repository root after changing dashboards/dashboards.go:
//
//	go run ./dashboards/gen
//
// The dashboards tests fail while the checked-in files differ from its output.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/paasmeter/paasmeter/dashboards"
)

func main() {
	out := flag.String("out", "dashboards", "directory to write the dashboards' JSON files to")
	flag.Parse()
	if err := dashboards.Write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
