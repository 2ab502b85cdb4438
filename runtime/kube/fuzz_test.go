package kube

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzParseCRILine: a CRI log file is written by the container runtime, but
// its text is the container's, and a file cut mid-line or corrupted on disk
// can hold anything. Whatever the input, the parser must not panic; a line
// it takes must say what it says: a known stream, and a text that is the
// input's end, which a line written back from it parses to again.
func FuzzParseCRILine(f *testing.F) {
	for _, s := range []string{
		"2026-12-06T23:50:38.793059427Z stdout F start ...",
		"2026-12-06T23:50:38.793059427Z stderr P a piece ",
		"2026-12-06T23:50:38Z stdout F",
		"2026-12-06T23:50:38Z stdout F:x tagged",
		"2026-12-07T00:50:38.1+01:00 stdout F zoned",
		"2026-12-06T23:50:38Z stdin F x",
		"not a line",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseCRILine(b)
		if err != nil {
			return
		}
		if l.Stream != "stdout" && l.Stream != "stderr" {
			t.Fatalf("stream %q", l.Stream)
		}
		if !bytes.HasSuffix(b, l.Text) {
			t.Fatalf("text %q is not the line's end", l.Text)
		}
		tag := "F"
		if l.Partial {
			tag = "P"
		}
		again, err := ParseCRILine([]byte(strings.Join([]string{l.Time.Format(time.RFC3339Nano), l.Stream, tag, string(l.Text)}, " ")))
		if err != nil || !again.Time.Equal(l.Time) || again.Stream != l.Stream || again.Partial != l.Partial || !bytes.Equal(again.Text, l.Text) {
			t.Fatalf("written back and parsed again: %+v, %v; want %+v", again, err, l)
		}
	})
}
