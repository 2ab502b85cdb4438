// Package privfiletest checks in tests that data files are private.
package privfiletest

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/paasmeter/paasmeter/internal/privfile"
)

// WithoutUmask runs fn with the process's umask 0, so that only the modes
// the code sets count; it must not run in parallel with other tests.
func WithoutUmask(t testing.TB, fn func()) {
	t.Helper()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	fn()
}

// CheckTree fails t unless root and every directory under it have
// privfile.DirMode and every file privfile.FileMode; it returns the names
// of the files it saw, relative to root, so the caller can check that the
// ones it cares about exist.
func CheckTree(t testing.TB, root string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		want := privfile.FileMode
		if d.IsDir() {
			want = privfile.DirMode
		} else {
			seen[rel] = true
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %#o, want %#o", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// CheckTreeHas is CheckTree that also fails t for each of names (relative to
// root) it did not see.
func CheckTreeHas(t testing.TB, root string, names ...string) {
	t.Helper()
	seen := CheckTree(t, root)
	for _, name := range names {
		if !seen[name] {
			t.Errorf("%s was not created (files: %v)", name, seen)
		}
	}
}
