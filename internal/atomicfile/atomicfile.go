// Package atomicfile replaces small state files so that a crash at any moment
// leaves either the old content or the new one, never a mix or nothing.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/paasmeter/paasmeter/internal/privfile"
)

// Write replaces path with data: it writes a temporary file beside it,
// fsyncs it, renames it over path and fsyncs the directory, so the rename
// itself survives a power loss. The file is readable by its owner alone
// (privfile.FileMode): such files hold positions in tenants' logs and spools.
func Write(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := privfile.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
