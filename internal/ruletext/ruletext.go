// Package ruletext reads the rule files that tests keep as data
// (sla/testdata/minutes, billing/testdata/rules): lines of words, blank
// lines and # comment lines skipped, each mistake named by its file:line.
package ruletext

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Line is one line of a rule file, read word by word.
type Line struct {
	// Pos is the line's file:line.
	Pos string
	// Words are the words not read yet.
	Words []string
}

// Errorf returns an error that starts with the line's file:line.
func (l *Line) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s", l.Pos, fmt.Sprintf(format, args...))
}

// Word takes the next word; what names it in the error when it is missing.
func (l *Line) Word(what string) (string, error) {
	if len(l.Words) == 0 {
		return "", l.Errorf("missing %s", what)
	}
	w := l.Words[0]
	l.Words = l.Words[1:]
	return w, nil
}

// Keyword takes the next word, which must be k.
func (l *Line) Keyword(k string) error {
	w, err := l.Word(strconv.Quote(k))
	if err == nil && w != k {
		err = l.Errorf("%q where %q belongs", w, k)
	}
	return err
}

// End fails when words are left over.
func (l *Line) End() error {
	if len(l.Words) > 0 {
		return l.Errorf("unexpected %q", strings.Join(l.Words, " "))
	}
	return nil
}

// Read calls fn with each line of r that is neither blank nor a comment,
// until fn fails; name is how positions name the file.
func Read(name string, r io.Reader, fn func(l *Line) error) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if err := fn(&Line{Pos: fmt.Sprintf("%s:%d", name, n), Words: strings.Fields(text)}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
