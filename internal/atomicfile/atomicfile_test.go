package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/paasmeter/paasmeter/internal/atomicfile"
	"github.com/paasmeter/paasmeter/internal/privfile/privfiletest"
)

// TestAFileWrittenIsPrivate: state files such as the log checkpoints are
// the owner's alone, whatever the umask.
func TestAFileWrittenIsPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "checkpoints.json")
	privfiletest.WithoutUmask(t, func() {
		for _, v := range []string{"1", "2"} {
			if err := atomicfile.Write(path, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
	})
	if got, err := os.ReadFile(path); err != nil || string(got) != "2" {
		t.Errorf("content %q, %v; want 2", got, err)
	}
	if seen := privfiletest.CheckTree(t, dir); len(seen) != 1 {
		t.Errorf("files: %v, want the file alone", seen)
	}
}
