package privfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/paasmeter/paasmeter/internal/privfile"
	"github.com/paasmeter/paasmeter/internal/privfile/privfiletest"
)

func TestModesDoNotDependOnTheUmask(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "a", "b")
	privfiletest.WithoutUmask(t, func() {
		if err := privfile.MkdirAll(dir); err != nil {
			t.Fatal(err)
		}
		f, err := privfile.OpenFile(filepath.Join(dir, "new"), os.O_WRONLY)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := privfile.SQLite(filepath.Join(dir, "x.db")); err != nil {
			t.Fatal(err)
		}
	})
	if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("an existing parent changed mode: %v, %v", fi.Mode(), err)
	}
	seen := privfiletest.CheckTree(t, filepath.Join(root, "a"))
	if !seen[filepath.Join("b", "new")] || !seen[filepath.Join("b", "x.db")] {
		t.Errorf("files created: %v", seen)
	}
}

func TestAnExistingOpenFileIsTightened(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	for _, p := range []string{db, db + "-wal", db + "-shm", filepath.Join(dir, "log")} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := privfile.SQLite(db); err != nil {
		t.Fatal(err)
	}
	f, err := privfile.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(dir, privfile.DirMode); err != nil {
		t.Fatal(err)
	}
	privfiletest.CheckTree(t, dir)
}
