package docker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/paasmeter/paasmeter/runtime/engine"
)

// Logs reads the stdout and stderr of container id through the engine's logs
// API, from since on (inclusive; zero: from its creation), and calls fn with
// each message in the order the engine stored them. With follow it goes on
// while the container runs: the engine ends the stream when it stops. It
// returns nil at the end of the stream, fn's error, or why the stream broke.
// The engine reads across the files its json-file and local drivers rotated.
//
// A message's Text is only valid during the call.
func (e *Engine) Logs(ctx context.Context, id string, since time.Time, follow bool, fn func(engine.LogMessage) error) error {
	in, err := e.Client().ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("docker: logs of %s: %w", id, err)
	}
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow, Timestamps: true}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	rc, err := e.Client().ContainerLogs(ctx, id, opts)
	if err != nil {
		return fmt.Errorf("docker: logs of %s: %w", id, err)
	}
	defer rc.Close()
	if in.Config != nil && in.Config.Tty {
		err = readRaw(rc, fn)
	} else {
		// The engine writes each message as one frame, and StdCopy hands each
		// frame to one Write: a Write is a message.
		_, err = stdcopy.StdCopy(messageWriter{engine.Stdout, fn}, messageWriter{engine.Stderr, fn}, rc)
	}
	if err != nil {
		return fmt.Errorf("docker: logs of %s: %w", id, err)
	}
	return nil
}

// messageWriter turns the frames of one stream into messages.
type messageWriter struct {
	stream string
	fn     func(engine.LogMessage) error
}

func (w messageWriter) Write(p []byte) (int, error) {
	m, err := parseMessage(w.stream, p)
	if err != nil {
		return 0, err
	}
	if err := w.fn(m); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readRaw reads the stream of a container with a terminal: not multiplexed,
// stdout only, and a line end is the only boundary between messages.
func readRaw(r io.Reader, fn func(engine.LogMessage) error) error {
	br := bufio.NewReader(r)
	for {
		p, err := br.ReadBytes('\n')
		if len(p) > 0 {
			m, perr := parseMessage(engine.Stdout, p)
			if perr != nil {
				return perr
			}
			if ferr := fn(m); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// parseMessage reads "TIMESTAMP TEXT[\n]", as the engine writes a message
// with timestamps.
func parseMessage(stream string, p []byte) (engine.LogMessage, error) {
	ts, text, ok := bytes.Cut(p, []byte{' '})
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if !ok || err != nil {
		return engine.LogMessage{}, fmt.Errorf("a log message without its timestamp: %q", truncateBytes(p, 64))
	}
	m := engine.LogMessage{Stream: stream, Time: t.UTC(), Text: text, Partial: true}
	if n := len(text); n > 0 && text[n-1] == '\n' {
		m.Text, m.Partial = bytes.TrimSuffix(text[:n-1], []byte{'\r'}), false
	}
	return m, nil
}

func truncateBytes(p []byte, n int) []byte {
	if len(p) > n {
		return p[:n]
	}
	return p
}
