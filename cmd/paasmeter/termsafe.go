package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// termSafe returns s with what a terminal would act on written out visibly:
// C0 controls but the tab (a newline too: one line of output stays one
// line), DEL and C1 controls as \xNN, bytes that are not UTF-8 as \xNN, and
// the Unicode line separators and bidirectional overrides as \uNNNN. Lines
// of tenants' logs are theirs to fill: raw, an escape sequence could retitle,
// recolour or rewrite an operator's terminal, or hide what it shows. A
// backslash is left as it is, so a line that says \x1b itself reads the same.
func termSafe(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if unsafeRune(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s // the common case: nothing to escape, no copy
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case !unsafeRune(r, size):
			b.WriteString(s[i : i+size])
		case r == utf8.RuneError || r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, s[i]) // C0, DEL, a stray byte
			if size == 2 {
				fmt.Fprintf(&b, `\x%02x`, s[i+1]) // a C1 control, as its UTF-8 bytes
			}
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// unsafeRune says whether r, decoded from size bytes, is one termSafe escapes.
func unsafeRune(r rune, size int) bool {
	switch {
	case r == '\t':
		return false
	case r < 0x20, r == 0x7f, 0x80 <= r && r <= 0x9f:
		return true
	case r == utf8.RuneError && size == 1:
		return true
	case r == 0x2028, r == 0x2029, 0x202a <= r && r <= 0x202e, 0x2066 <= r && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}
