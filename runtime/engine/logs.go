package engine

import "time"

// The output streams of a container.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// LogMessage is one message of a container's output as the engine stored it:
// a whole line, or a piece of a long one. Docker cuts lines longer than 16 KiB
// into pieces that all carry the time of the first.
type LogMessage struct {
	// Stream is Stdout or Stderr.
	Stream string
	// Time is when the engine read the line from the container.
	Time time.Time
	// Text is the message without its line end.
	Text []byte
	// Partial says the line goes on in the stream's next message; the last
	// line of a container that exited without a line end is also partial.
	Partial bool
}
