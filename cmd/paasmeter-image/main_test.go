package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/internal/ociimage"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// TestRunWritesAReadableArchiveAndRefusesADynamicBinary writes the busybox
// image as up.sh does, and refuses to put a dynamic binary where the
// paasmeter image would run it, writing nothing.
func TestRunWritesAReadableArchiveAndRefusesADynamicBinary(t *testing.T) {
	if _, err := os.Stat(ociimage.HostBusybox); err != nil {
		testenv.Missing(t, "no static busybox: apt-get install busybox-static (scripts/test-deps.sh installs it)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "images", "busybox.tar")
	if err := run([]string{"-o", out, "-ref", "localhost/x/busybox:1", "-busybox", ociimage.HostBusybox, "--", "/bin/sh"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 || fi.Size() == 0 {
		t.Errorf("archive mode %v, size %d: want 0644 and content", fi.Mode().Perm(), fi.Size())
	}

	bad := filepath.Join(dir, "bad.tar")
	err = run([]string{"-o", bad, "-ref", "localhost/paasmeter:x", "-paasmeter", "/usr/bin/env"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("a dynamic binary: %v, want it refused as dynamically linked", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a refused image left %s (%v)", bad, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the temporary directory holds %v, want only images/", entries)
	}
}
