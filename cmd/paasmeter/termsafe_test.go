package main

import "testing"

func TestTermSafeEscapesWhatATerminalWouldActOn(t *testing.T) {
	for in, want := range map[string]string{
		"plain line\twith a tab":        "plain line\twith a tab",
		"red \x1b[31malert\x1b[0m":      `red \x1b[31malert\x1b[0m`,
		"retitle \x1b]0;pwned\x07":      `retitle \x1b]0;pwned\x07`,
		"two\nlines\r":                  `two\x0alines\x0d`,
		"nul \x00 del \x7f":             `nul \x00 del \x7f`,
		"c1 csi \u009b31m":              `c1 csi \xc2\x9b31m`,
		"stray \xff byte":               `stray \xff byte`,
		"bidi \u202eevil\u202c":         `bidi \u202eevil\u202c`,
		"accents é ü and ✓ stay":        "accents é ü and ✓ stay",
		`a literal \x1b stays as it is`: `a literal \x1b stays as it is`,
		"":                              "",
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
