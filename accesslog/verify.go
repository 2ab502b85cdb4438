package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/paasmeter/paasmeter/internal/jsonkey"
)

// Chain is what Verify found in an intact file.
type Chain struct {
	// Entries is the number of lines.
	Entries int
	// Head is the hash of the last line ("" for an empty file): kept
	// elsewhere, it shows later whether the file was cut short or rewritten.
	Head string
}

// BrokenError names the first line where a file's chain breaks.
type BrokenError struct {
	// Line is 1-based.
	Line   int
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Verify reads an access log file and checks that every line is one entry
// (a JSON object with no repeated key) whose prev is the hash of the line
// before it ("" on the first), and that the file ends with a newline. It
// returns a *BrokenError for the first line that is not so, or the read
// error.
func Verify(r io.Reader) (Chain, error) {
	br := bufio.NewReader(r)
	var c Chain
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("access log: %w", err)
		}
		n := c.Entries + 1
		body, complete := bytes.CutSuffix(line, []byte("\n"))
		if !complete {
			return c, &BrokenError{Line: n, Reason: "the file ends inside this line (no newline after it)"}
		}
		if reason := checkLine(body, c.Head); reason != "" {
			return c, &BrokenError{Line: n, Reason: reason}
		}
		c.Entries, c.Head = n, Hash(body)
	}
}

// checkLine says what is wrong with one line whose predecessor hashes to
// prev, or "".
func checkLine(line []byte, prev string) string {
	var e struct {
		Prev *string `json:"prev"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if t := bytes.TrimLeft(line, " \t\r"); len(t) == 0 || t[0] != '{' {
		return "is not a JSON object"
	}
	if err := dec.Decode(&e); err != nil {
		return fmt.Sprintf("is not an entry: %s", truncate(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "has more after its JSON object"
	}
	if key, ok := jsonkey.Repeated(line); ok {
		return fmt.Sprintf("repeats the key %q", truncate(key))
	}
	switch {
	case e.Prev == nil:
		return `has no "prev": it is not chained`
	case *e.Prev != prev && prev == "":
		return fmt.Sprintf("prev is %q, want \"\": the first line has no predecessor", truncate(*e.Prev))
	case *e.Prev != prev:
		return fmt.Sprintf("prev is %q, but the line before hashes to %s: a line was changed, inserted or removed here or just before", truncate(*e.Prev), prev)
	}
	return ""
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
