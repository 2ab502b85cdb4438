package sqlkit

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// FuzzParseCursor feeds arbitrary strings to the decoder of log cursors,
// which reach it from a client (the collector's check on a cursor is a hash
// anyone can compute, not a secret): it never panics, and a cursor it accepts
// is the one its String encodes.
func FuzzParseCursor(f *testing.F) {
	id := bytes.Repeat([]byte{0xab}, 16)
	f.Add(Cursor{Time: 1763208000123456789, Seq: 3, ID: id}.String())
	f.Add(Cursor{Time: -1, Seq: -1, ID: id}.String())
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("1:2:3")))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("1:2:3:4")))
	f.Add("")
	f.Add("not base64!")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		again, err := ParseCursor(c.String())
		if err != nil || again.Time != c.Time || again.Seq != c.Seq || !bytes.Equal(again.ID, c.ID) {
			t.Fatalf("%q decodes as %+v, whose String %q decodes as %+v, %v", s, c, c.String(), again, err)
		}
	})
}
