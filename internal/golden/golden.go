// Package golden compares what a test produces with a file kept in the
// repository, and rewrites the file when the test runs with -update:
//
//	go test ./billing/pdf -run TestRender -update
//
// The flag is registered here, once, for every package whose tests import
// this one; a golden file changes only when someone asks for it and then
// reviews the diff before committing.
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// update is the -update flag. Only tests import this package, so only test
// binaries have it, and nothing but the command line sets it.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/ instead of comparing with them")

// Updating reports whether the tests run with -update: a test that keeps an
// artefact for people to look at, not to compare, writes it only then.
func Updating() bool { return *update }

// Check fails t when got differs from the file at path, or writes got to path
// (creating its folder) under -update.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the test produced (go test -update rewrites it; review the diff before committing): %s",
			path, difference(got, want))
	}
}

// difference says where got first departs from want: the line of a text
// file, the byte offset of a binary one.
func difference(got, want []byte) string {
	if !utf8.Valid(got) || !utf8.Valid(want) || bytes.IndexByte(got, 0) >= 0 || bytes.IndexByte(want, 0) >= 0 {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		return fmt.Sprintf("binary content, first difference at byte %d (%d bytes produced, %d in the file)", i, len(got), len(want))
	}
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	i := 0
	for i < len(g) && i < len(w) && bytes.Equal(g[i], w[i]) {
		i++
	}
	line := func(ls [][]byte) string {
		if i < len(ls) {
			return fmt.Sprintf("%q", ls[i])
		}
		return "(end of content)"
	}
	return fmt.Sprintf("first difference at line %d (%d lines produced, %d in the file)\n got: %s\nwant: %s\nproduced:\n%s",
		i+1, len(g), len(w), line(g), line(w), got)
}
