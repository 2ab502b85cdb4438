// Package migrate is the policy the SQL stores share for their schemas:
// migrations numbered from 1 and applied in order, each once, and a schema
// newer than the binary refused rather than written to.
package migrate

import "fmt"

// Apply applies the migrations after the first applied ones, in order, each
// with apply (its version from 1, its statements). It refuses a schema of
// more versions than migrations holds.
func Apply(applied int, migrations []string, apply func(version int, stmts string) error) error {
	if applied > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade paasmeter", applied, len(migrations))
	}
	for i := applied; i < len(migrations); i++ {
		if err := apply(i+1, migrations[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
	}
	return nil
}
