package kube

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paasmeter/paasmeter/runtime/engine"
)

// CRILine is one line of a CRI log file, as the container runtime writes
// them for the kubelet:
//
//	2026-12-06T23:50:38.793059427Z stdout F start ...
//
// the time the runtime read it, the stream, a tag (P: a piece of a line that
// goes on in the stream's next line; F: the end of a line; further
// colon-separated tags may follow), and the text without its line end.
type CRILine struct {
	Time    time.Time
	Stream  string
	Partial bool
	Text    []byte
}

// ParseCRILine parses one line of a CRI log file (without its newline). The
// returned Text aliases b.
func ParseCRILine(b []byte) (CRILine, error) {
	ts, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return CRILine{}, errors.New("cri log: no stream after the time")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return CRILine{}, fmt.Errorf("cri log: time: %w", err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return CRILine{}, errors.New("cri log: no tag after the stream")
	}
	l := CRILine{Time: t, Stream: string(stream)}
	if l.Stream != engine.Stdout && l.Stream != engine.Stderr {
		return CRILine{}, fmt.Errorf("cri log: stream %q is neither stdout nor stderr", truncated(stream))
	}
	// An empty text may come without the space that would precede it.
	tags, text, _ := bytes.Cut(rest, []byte{' '})
	first, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(first) {
	case "P":
		l.Partial = true
	case "F":
	default:
		return CRILine{}, fmt.Errorf("cri log: tag %q is neither P nor F", truncated(tags))
	}
	l.Text = text
	return l, nil
}

func truncated(b []byte) []byte { return b[:min(len(b), 32)] }

// LogFile is where the kubelet has a run's output written:
// <dir>/<namespace>_<pod>_<uid>/<container>/<restart count>.log.
func LogFile(dir, namespace, pod, uid, container string, n int32) string {
	return filepath.Join(dir, namespace+"_"+pod+"_"+uid, container, strconv.Itoa(int(n))+".log")
}

// rotated lists the files a log file was rotated into, oldest first. The
// kubelet renames N.log to N.log.<YYYYMMDD-hhmmss> when it grows past its
// limit and compresses the older ones to N.log.<stamp>.gz, so the stamps
// sort in time order; a file being compressed (.gz.tmp) is skipped, its
// uncompressed original still being there.
func rotated(file string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Dir(file))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	prefix := filepath.Base(file) + "."
	stamps := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, prefix) || strings.HasSuffix(name, ".tmp") {
			continue
		}
		stamp := strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".gz")
		if _, dup := stamps[stamp]; !dup || !strings.HasSuffix(name, ".gz") {
			stamps[stamp] = name // the uncompressed one when both are there
		}
	}
	keys := make([]string, 0, len(stamps))
	for k := range stamps {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = filepath.Join(filepath.Dir(file), stamps[k])
	}
	return out, nil
}

// criReader turns the lines of a run's CRI log files into engine log
// messages, for runtime/tail, which numbers and checkpoints them as it does
// Docker's. The pieces of a line (P) are handed on as partial messages that
// all carry the time of the line's first piece, as Docker's do, so the tailer
// joins them (within its own size bound) and numbers the line at that time.
type criReader struct {
	since time.Time
	fn    func(engine.LogMessage) error
	// first holds, per stream, the time of the first piece of a line not
	// ended yet.
	first map[string]time.Time
	// bad counts lines that are not in the CRI format (skipped).
	bad int
}

func newCRIReader(since time.Time, fn func(engine.LogMessage) error) *criReader {
	return &criReader{since: since, fn: fn, first: map[string]time.Time{}}
}

// line takes one line of a file.
func (r *criReader) line(b []byte) error {
	l, err := ParseCRILine(b)
	if err != nil {
		r.bad++
		return nil
	}
	at := l.Time
	if t, ok := r.first[l.Stream]; ok {
		at = t
	}
	if l.Partial {
		r.first[l.Stream] = at
	} else {
		delete(r.first, l.Stream)
	}
	if at.Before(r.since) {
		return nil
	}
	return r.fn(engine.LogMessage{Stream: l.Stream, Time: at, Text: l.Text, Partial: l.Partial})
}

// readAll hands every whole line of rd to the reader, and returns how many
// bytes that was: a last line without its newline is being written, and is
// left for the next read.
func (r *criReader) readAll(rd io.Reader) (int64, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	var n int64
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			buf = append(buf, chunk...) // longer than the buffer: the runtime cuts at 16 KiB, but be safe
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		line := chunk
		if len(buf) > 0 {
			line = append(buf, chunk...)
		}
		n += int64(len(line))
		if err := r.line(line[:len(line)-1]); err != nil {
			return n, err
		}
		buf = buf[:0]
	}
}

// readFile hands every line of a finished (rotated) file to the reader.
func (r *criReader) readFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // compressed or removed meanwhile: the rotation goes on without us
		}
		return err
	}
	defer f.Close()
	var rd io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("kube: %s: %w", name, err)
		}
		defer zr.Close()
		rd = zr
	}
	_, err = r.readAll(rd)
	return err
}

// pollEvery is how often a followed log file is looked at for new lines.
const pollEvery = 250 * time.Millisecond

// follow reads a run's log file and the files it was rotated into, from the
// oldest on, and then, while running reports the run goes on, the lines
// appended to it and to the files it is rotated into after. It returns once
// the run is over and its file read to the end (or the file is gone with its
// pod), or when ctx ends.
func (r *criReader) follow(ctx context.Context, file string, follow bool, running func() bool) error {
	old, err := rotated(file)
	if err != nil {
		return err
	}
	for _, name := range old {
		if err := r.readFile(name); err != nil {
			return err
		}
	}
	var f *os.File
	var off int64
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		// Whether the run still runs is asked before the file is read: a run
		// found over has written its last line before.
		live := follow && running()
		if f == nil {
			if f, err = os.Open(file); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			off = 0
		}
		if f != nil {
			n, err := r.readAll(io.NewSectionReader(f, off, 1<<62))
			off += n
			if err != nil {
				return err
			}
			// Rotated meanwhile: a new file is at the name, so the writer has
			// moved to it, but it may have written to the renamed one after
			// the read above: read that to its end, then go on in the new one.
			if moved(f, file) {
				if _, err := r.readAll(io.NewSectionReader(f, off, 1<<62)); err != nil {
					return err
				}
				f.Close()
				f = nil
				continue
			}
		}
		if !live {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pollEvery):
		}
	}
}

// moved reports whether the open file f is no longer the one at name.
func moved(f *os.File, name string) bool {
	a, err := f.Stat()
	if err != nil {
		return true
	}
	b, err := os.Stat(name)
	if err != nil {
		return false // removed with its pod, or between rename and create: keep reading what we have
	}
	as, ok1 := a.Sys().(*syscall.Stat_t)
	bs, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && (as.Ino != bs.Ino || as.Dev != bs.Dev)
}
