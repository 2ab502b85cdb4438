// Package rulestest helps tests load the repository's Prometheus rule files
// into a real Prometheus.
package rulestest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FastCopies writes the rule files to dir with every group evaluated every
// second and returns the copies' paths: a group's own interval (5m for the
// monthly views) would leave its rules unevaluated, health "unknown" and
// their series unrecorded, for minutes.
func FastCopies(t testing.TB, rules []string, dir string) []string {
	t.Helper()
	var copies []string
	for i, path := range rules {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		groups, _ := doc["groups"].([]any)
		for _, g := range groups {
			if g, ok := g.(map[string]any); ok {
				g["interval"] = "1s"
			}
		}
		out, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(path)))
		if err := os.WriteFile(cp, out, 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, cp)
	}
	return copies
}
