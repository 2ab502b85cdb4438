// Package accesslog records operators' reads of a tenant's data (container
// logs of public institutions can hold health data), the reads of tenant
// data it refused, and agents' writes refused because their node may not run
// the institution. Changes (invoices, credit notes, maintenance windows) are
// not here: they go to the state store's audit log, in the transaction that
// makes them. A Recorder is fail-closed by contract: when Record fails, the
// caller must not do what it was about to record.
//
// The file is tamper-evident: each line holds the SHA-256 of the line before
// it (Entry.Prev), so editing, inserting or removing a line breaks the chain
// at the next one, which Verify finds. A chain can still be cut at its end or
// rewritten whole by someone who can write the file: the head Verify reports
// (the last line's hash), kept elsewhere, anchors it.
package accesslog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/internal/privfile"
)

// Outcome says what became of a read.
type Outcome string

// Outcomes.
const (
	// Allowed reads were answered: Status is the answer's.
	Allowed Outcome = "allowed"
	// Refused reads were not: the token may not read the tenant, or the
	// tenant is unknown. Status is the refusal's. An agent's write of an
	// institution its node may not run is recorded refused too.
	Refused Outcome = "refused"
)

// Entry is one recorded read.
type Entry struct {
	Time time.Time `json:"time"`
	// Actor is the configured name of the token that acted (never the token).
	Actor string `json:"actor"`
	// Action names what was done, e.g. "GET /api/v1/tenants/{tenant}/logs".
	Action string `json:"action"`
	// Tenant is whose data was touched.
	Tenant string `json:"tenant"`
	// Detail is what exactly: the query, the changed fields.
	Detail string `json:"detail,omitempty"`
	// Client is the address the request came from (host:port of the peer).
	Client string `json:"client,omitempty"`
	// Outcome and Status say whether the read was answered, and with which
	// HTTP status.
	Outcome Outcome `json:"outcome,omitempty"`
	Status  int     `json:"status,omitempty"`
	// Prev is the SHA-256 (hex) of the previous line of the file, without
	// its newline; "" on the first line. File.Record sets it.
	Prev string `json:"prev"`
}

// Recorder keeps the entries of reads.
type Recorder interface {
	// Record stores e durably before it returns. On error the entry may be
	// lost, and the caller must refuse the action.
	Record(ctx context.Context, e Entry) error
}

// File appends entries as JSON lines to a file, fsynced before Record
// returns, each chained to the one before. It is safe for concurrent use by
// one process; two processes must not share a file.
type File struct {
	mu   sync.Mutex
	f    *os.File
	path string
	// prev is the hash of the file's last line, the next entry's Prev.
	prev string
}

// OpenFile opens (creating it and its directory) the access log at path for
// appending. A last line cut short (a crash while Record wrote it: Record
// had not returned, so the read it named was not answered) is cut off, so
// the chain goes on from the last whole line.
func OpenFile(path string) (*File, error) {
	if err := privfile.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	// Only the collector's user reads it: the entries name tenants and queries.
	f, err := privfile.OpenFile(path, os.O_RDWR|os.O_APPEND)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	prev, err := lastLineHash(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("access log %s: %w", path, err)
	}
	return &File{f: f, path: path, prev: prev}, nil
}

// lastLineHash returns the hash of f's last whole line ("" for an empty
// file), cutting off an incomplete line after it.
func lastLineHash(f *os.File) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	end := fi.Size()
	// Read backwards until the newline before the last line, or the start.
	const chunk = 64 << 10
	var tail []byte
	lineEnd := int64(-1) // offset of the last newline
	for pos := end; pos > 0; {
		n := min(int64(chunk), pos)
		pos -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, pos); err != nil {
			return "", err
		}
		tail = append(buf, tail...)
		for i := len(buf) - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				continue
			}
			at := pos + int64(i)
			if lineEnd < 0 {
				lineEnd = at
				continue
			}
			return Hash(tail[at+1-pos : lineEnd-pos]), cutAfter(f, lineEnd, end)
		}
	}
	if lineEnd < 0 {
		return "", cutAfter(f, -1, end) // no whole line at all
	}
	return Hash(tail[:lineEnd]), cutAfter(f, lineEnd, end)
}

// cutAfter truncates f after the newline at lineEnd, if anything follows it.
func cutAfter(f *os.File, lineEnd, size int64) error {
	if lineEnd+1 == size {
		return nil
	}
	if err := f.Truncate(lineEnd + 1); err != nil {
		return fmt.Errorf("cutting off an incomplete last line: %w", err)
	}
	return f.Sync()
}

// Hash is the chain's hash of a line (without its newline): SHA-256, hex.
func Hash(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// Path returns the file's path.
func (a *File) Path() string { return a.path }

// Record appends e, chained to the last line, and fsyncs the file. A failed
// write is cut off again, so that one failure never leaves a torn line that
// would corrupt the next entry.
func (a *File) Record(ctx context.Context, e Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The lock may have been waited for: a caller that gave up meanwhile is
	// not audited for an action it will not take.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if a.f == nil {
		return errors.New("access log: file is closed")
	}
	e.Prev = a.prev
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	fi, err := a.f.Stat()
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return errors.Join(fmt.Errorf("access log: write %s: %w", a.path, err), a.cut(fi.Size()))
	}
	if err := a.f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("access log: fsync %s: %w", a.path, err), a.cut(fi.Size()))
	}
	a.prev = Hash(b)
	return nil
}

func (a *File) cut(size int64) error {
	if err := a.f.Truncate(size); err != nil {
		return fmt.Errorf("access log: cutting a failed entry off %s: %w", a.path, err)
	}
	return nil
}

// Close closes the file; later Records fail.
func (a *File) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
