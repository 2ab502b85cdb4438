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
	// Unchained is how many of them, at the start, carry no prev: entries
	// of releases before 2026-12-07, which the chain does not cover.
	Unchained int
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
// before it ("" on the first), and that the file ends with a newline. Lines
// without prev are allowed only before the first line with one (the
// entries of older releases, counted in Chain.Unchained). It
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
		chained, reason := checkLine(body, c.Head, c.Unchained == c.Entries)
		if reason != "" {
			return c, &BrokenError{Line: n, Reason: reason}
		}
		if !chained {
			c.Unchained++
		}
		c.Entries, c.Head = n, Hash(body)
	}
}

// checkLine says whether line is chained, and what is wrong with it ("" if
// nothing) when its predecessor hashes to prev; an unchained line is right
// only if every line before it was unchained too.
func checkLine(line []byte, prev string, unchainedSoFar bool) (bool, string) {
	var e struct {
		Prev *string `json:"prev"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if t := bytes.TrimLeft(line, " \t\r"); len(t) == 0 || t[0] != '{' {
		return false, "is not a JSON object"
	}
	if err := dec.Decode(&e); err != nil {
		return false, fmt.Sprintf("is not an entry: %s", truncate(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return false, "has more after its JSON object"
	}
	if key, ok := jsonkey.Repeated(line); ok {
		return false, fmt.Sprintf("repeats the key %q", truncate(key))
	}
	switch {
	case e.Prev == nil && unchainedSoFar:
		return false, ""
	case e.Prev == nil:
		return false, `has no "prev" after chained lines: it was inserted or changed`
	case *e.Prev != prev && prev == "":
		return true, fmt.Sprintf("prev is %q, want \"\": the first line has no predecessor", truncate(*e.Prev))
	case *e.Prev != prev:
		return true, fmt.Sprintf("prev is %q, but the line before hashes to %s: a line was changed, inserted or removed here or just before", truncate(*e.Prev), prev)
	}
	return true, ""
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
