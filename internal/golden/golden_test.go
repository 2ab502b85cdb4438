package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPassesOnTheSameBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "want.txt")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Check(t, path, []byte("a\nb\n"))
}

func TestDifference(t *testing.T) {
	tests := []struct {
		name, got, want, says string
	}{
		{"a changed line of text is named by its number", "a\nb\nc\n", "a\nx\nc\n", `line 2 (4 lines produced, 4 in the file)` + "\n got: \"b\"\nwant: \"x\""},
		{"text cut short says where it ends", "a\n", "a\nb\n", "line 2 (2 lines produced, 3 in the file)\n got: \"\"\nwant: \"b\""},
		{"text longer than the file shows the extra line", "a\nb", "a", "line 2 (2 lines produced, 1 in the file)\n got: \"b\"\nwant: (end of content)"},
		{"binary content is named by its byte offset", "%PDF\x00\x01", "%PDF\x00\x02", "binary content, first difference at byte 5 (6 bytes produced, 6 in the file)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := difference([]byte(tc.got), []byte(tc.want)); !strings.Contains(got, tc.says) {
				t.Errorf("difference says\n%s\nwant it to say\n%s", got, tc.says)
			}
		})
	}
}
