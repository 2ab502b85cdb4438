// Package accesslog records operators' reads of a tenant's data (container
// logs of public institutions can hold health data). Changes (invoices,
// credit notes, maintenance windows) are not here: they go to the state
// store's audit log, in the transaction that makes them. A Recorder is
// fail-closed by contract: when Record fails, the caller must not do what it
// was about to record.
package accesslog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
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
}

// Recorder keeps the entries of reads.
type Recorder interface {
	// Record stores e durably before it returns. On error the entry may be
	// lost, and the caller must refuse the action.
	Record(ctx context.Context, e Entry) error
}

// File appends entries as JSON lines to a file, fsynced before Record
// returns. It is safe for concurrent use by one process; two processes must
// not share a file.
type File struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenFile opens (creating it and its directory) the access log at path for appending.
func OpenFile(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	// Only the collector's user reads it: the entries name tenants and queries.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return &File{f: f, path: path}, nil
}

// Path returns the file's path.
func (a *File) Path() string { return a.path }

// Record appends e and fsyncs the file. A failed write is cut off again, so
// that one failure never leaves a torn line that would corrupt the next entry.
func (a *File) Record(ctx context.Context, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	b = append(b, '\n')
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
	fi, err := a.f.Stat()
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if _, err := a.f.Write(b); err != nil {
		return errors.Join(fmt.Errorf("audit: write %s: %w", a.path, err), a.cut(fi.Size()))
	}
	if err := a.f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("audit: fsync %s: %w", a.path, err), a.cut(fi.Size()))
	}
	return nil
}

func (a *File) cut(size int64) error {
	if err := a.f.Truncate(size); err != nil {
		return fmt.Errorf("audit: cutting a failed entry off %s: %w", a.path, err)
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
