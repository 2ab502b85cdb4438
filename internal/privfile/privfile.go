// Package privfile creates the files and directories that hold tenants' data
// (the stores, spools, checkpoints, the access log) readable by their owner
// alone. Modes are set with chmod after creating, so that the result does not
// depend on the process's umask, and an existing file of a release that made
// it readable by others is tightened when it is opened again.
package privfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The modes of data files and of the directories holding them.
const (
	FileMode os.FileMode = 0o600
	DirMode  os.FileMode = 0o700
)

// MkdirAll creates dir and any missing parents with DirMode. Directories that
// exist already keep their mode: a data directory may be one the operator
// (or systemd's StateDirectoryMode) made, and a shared parent such as /var/lib
// is not ours to change.
func MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, d := range missing {
		if err := os.Chmod(d, DirMode); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// OpenFile is os.OpenFile with O_CREATE and FileMode: the file, new or not,
// ends up with FileMode.
func OpenFile(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|os.O_CREATE, FileMode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(FileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// SQLite prepares the SQLite database at path before it is opened: it
// creates the file with FileMode if missing, and sets FileMode on it and on
// the journal, -wal and -shm files beside it that exist. SQLite creates those
// with the database file's mode, so they stay private too.
//
// An existing database is never opened here, only chmod-ed: closing any
// descriptor of a file drops every POSIX lock this process holds on it, so
// an open and close beside a handle already open on the same database (a
// second store handle, two stores in one test) would silently release that
// handle's SQLite locks.
func SQLite(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, FileMode)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrExist):
		return err
	}
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		if err := os.Chmod(path+suffix, FileMode); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
