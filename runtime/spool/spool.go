// Package spool is the agent's durable on-disk queue: what the agent produced
// stays here until the collector acknowledged it. Append returns only once its
// entries are fsynced, and a SIGKILL or power loss at any moment loses no
// entry whose Append returned and shows no part of one that did not.
//
// # Files
//
// A spool directory holds segment files, a state file and a lock file:
//
//   - seg-<Seq of its first entry, 20 decimal digits>.log: the entries, in Seq
//     order across files. A segment starts with an 8-byte header, "PMSPOOL"
//     and a format version byte ('2'), followed by frames.
//   - state.json: {"acked_through":N,"last_seq":M}, replaced atomically (write
//     a temporary file, fsync, rename, fsync the directory) by AckThrough.
//     last_seq keeps the numbering going once every segment is deleted.
//   - LOCK: flock(2)ed while a Spool has the directory open, so that a second
//     process cannot take an Append in flight for a torn tail and cut it off.
//
// A version 2 frame is, big-endian:
//
//	uint32  n: length of the body
//	uint32  CRC-32C (Castagnoli) of the 4 length bytes and the body
//	body:   uint8 flags | uint64 Seq | int64 AppendedAt (Unix ns) | uint8 len(Kind) | Kind | Data
//
// Flag bit 0 marks the last entry of an Append. The frames of one Append are
// written with one write and one fsync; frames after the last marked one are
// an Append a crash interrupted, and Open drops them with it.
//
// Version 1 segments, written by earlier agents, are still read: their CRC
// covers the body only, the body has no flags byte, and every frame counts as
// a whole Append. New entries always go to a version 2 segment.
//
// # Recovery
//
// Open checks every frame of the segments that hold unacknowledged entries.
// Only the newest segment may end in a torn write; Open truncates it there and
// reports the bytes in Stats.TruncatedBytes. Anything else is an error naming
// the file and offset, because those bytes are money: a bad frame in an older
// segment, a bad frame in the newest one followed by whole entries of a later
// Append, a missing segment, or a state file that knows of entries no segment
// holds.
package spool

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/paasmeter/paasmeter/internal/privfile"
)

// Entry is one spooled item.
type Entry struct {
	// Seq is assigned by Append: strictly increasing, never reused, also
	// across restarts.
	Seq uint64
	// Kind says what Data is, e.g. "usage" (1 to 64 bytes).
	Kind string
	// AppendedAt is the Options.Now of the Append, to the nanosecond, in UTC.
	AppendedAt time.Time
	// Data is the opaque payload.
	Data []byte
}

// Options configure a Spool. Zero values take the defaults.
type Options struct {
	// SegmentBytes: a segment that grew past this size takes no more
	// Appends (default 8 MiB, and at most MaxBytes/8).
	SegmentBytes int64
	// MaxBytes bounds the segment files on disk; an Append that would pass it
	// fails with ErrFull (default 1 GiB).
	MaxBytes int64
	// MaxEntryBytes bounds the Data of one entry (default 1 MiB, at most 64 MiB).
	MaxEntryBytes int
	// Now is the clock for AppendedAt (default time.Now).
	Now func() time.Time
	// AfterAppend, if set, runs when the entries of an Append are durable,
	// before Append returns: a failpoint for crash tests. It runs without the
	// Spool's lock held, so it may call the Spool.
	AfterAppend func()
}

// Stats describe a Spool.
type Stats struct {
	// Entries is how many entries are not acknowledged yet.
	Entries uint64
	// Bytes is the size of the segment files that hold unacknowledged
	// entries: space comes back a whole segment at a time.
	Bytes int64
	// OldestAppendedAt is the AppendedAt of the oldest unacknowledged entry
	// (zero if there is none).
	OldestAppendedAt time.Time
	// LastSeq is the Seq of the last entry ever appended.
	LastSeq uint64
	// AckedThrough is the highest Seq passed to AckThrough.
	AckedThrough uint64
	// TruncatedBytes is what Open cut off the newest segment: a torn write.
	TruncatedBytes int64
}

var (
	// ErrFull is returned by an Append that would pass Options.MaxBytes, or
	// that the disk refused for lack of space (then wrapping ENOSPC).
	ErrFull = errors.New("spool full")
	// ErrClosed is returned by the methods of a closed Spool.
	ErrClosed = errors.New("spool closed")
)

const (
	stateName = "state.json"
	lockName  = "LOCK"
)

// Spool is a durable FIFO of entries. It is safe for concurrent use.
type Spool struct {
	dir  string
	o    Options
	lock *os.File

	mu   sync.Mutex
	segs []segment // oldest first; only the last one takes Appends
	// f is the newest segment open for writing, nil until an Append needs it.
	f *os.File
	// dirty: f may hold bytes of a failed Append past the newest segment's
	// size, which must go before anything is written after them.
	dirty     bool
	lastSeq   uint64
	acked     uint64
	oldest    time.Time
	cursor    position
	truncated int64
	closed    bool
}

// position is the start of a frame whose Seq is at most acked+1, so that
// looking for the first pending entry need not read every acknowledged one
// again.
type position struct {
	first uint64 // of the segment
	off   int64
}

type stateFile struct {
	AckedThrough uint64 `json:"acked_through"`
	LastSeq      uint64 `json:"last_seq"`
}

// Open opens the spool in dir, creating it if needed, and recovers it after a
// crash (see the package documentation). Only one Spool may have dir open.
func Open(dir string, o Options) (*Spool, error) {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 8 << 20
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = 1 << 20
	}
	if o.MaxEntryBytes > maxEntryLimit {
		return nil, fmt.Errorf("spool: MaxEntryBytes %d is over the limit of %d", o.MaxEntryBytes, maxEntryLimit)
	}
	// Space comes back a whole segment at a time: keep segments small next to
	// the limit, or a half-delivered segment could hold the spool full.
	o.SegmentBytes = min(o.SegmentBytes, max(o.MaxBytes/8, 1))
	if o.Now == nil {
		o.Now = time.Now
	}
	// Entries hold tenants' usage and logs: only the agent's user reads them.
	if err := privfile.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, o: o, lock: lock}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := privfile.OpenFile(path, os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool: %s is open elsewhere (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("spool: lock %s: %w", path, err)
	}
	return f, nil
}

// load reads the state file and the segments, recovers the newest and checks
// that every unacknowledged entry is there.
func (s *Spool) load() error {
	statePath := filepath.Join(s.dir, stateName)
	var st stateFile
	if b, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("spool: %s is corrupt: %w", statePath, err)
		}
		if st.AckedThrough > st.LastSeq {
			return fmt.Errorf("spool: %s is corrupt: acknowledged through %d but the last entry is %d", statePath, st.AckedThrough, st.LastSeq)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: read %s: %w", statePath, err)
	}
	s.acked, s.lastSeq = st.AckedThrough, st.LastSeq

	names, err := filepath.Glob(filepath.Join(s.dir, segPrefix+"*"+segSuffix))
	if err != nil {
		return fmt.Errorf("spool: list %s: %w", s.dir, err)
	}
	for _, path := range names {
		first, ok := parseSegmentName(filepath.Base(path))
		if !ok {
			return fmt.Errorf("spool: %s is not a segment name this spool writes", path)
		}
		s.segs = append(s.segs, segment{first: first, last: first - 1, path: path})
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	// A segment followed by one starting at or below acked+1 holds only
	// acknowledged entries: it is left over from a crash during AckThrough,
	// and need not be read (nor be readable).
	for len(s.segs) > 1 && s.segs[1].first-1 <= s.acked {
		if err := removeSegment(s.segs[0].path); err != nil {
			return err
		}
		s.segs = s.segs[1:]
	}
	for i := range s.segs {
		if s.segs[i], err = recoverSegment(s.segs[i], i == len(s.segs)-1, &s.truncated); err != nil {
			return err
		}
	}
	if n := len(s.segs); n > 0 {
		s.lastSeq = max(s.lastSeq, s.segs[n-1].last)
	}
	if err := s.dropAcked(); err != nil {
		return err
	}
	next := s.acked + 1
	for i, sg := range s.segs {
		if sg.first > next || (i > 0 && sg.first < next) {
			return fmt.Errorf("spool: %s starts at entry %d, but entry %d is the next one: entries are missing or repeated", sg.path, sg.first, next)
		}
		next = sg.last + 1
	}
	if next <= s.lastSeq {
		return fmt.Errorf("spool: %s: entries %d to %d were appended but no segment holds them", s.dir, next, s.lastSeq)
	}
	return s.refreshOldest()
}

// Append adds entries of one kind, all or nothing, and returns their Seqs once
// they are fsynced. It fails with ErrFull, writing nothing, when they would
// take the segment files past Options.MaxBytes.
func (s *Spool) Append(kind string, data ...[]byte) ([]uint64, error) {
	if len(kind) == 0 || len(kind) > maxKind {
		return nil, fmt.Errorf("spool: kind %q must be 1 to %d bytes", kind, maxKind)
	}
	for i, d := range data {
		if len(d) > s.o.MaxEntryBytes {
			return nil, fmt.Errorf("spool: entry %d of the append has %d bytes, over MaxEntryBytes %d", i, len(d), s.o.MaxEntryBytes)
		}
	}
	seqs, err := s.append(kind, data)
	if err != nil || len(seqs) == 0 {
		return seqs, err
	}
	if s.o.AfterAppend != nil {
		s.o.AfterAppend()
	}
	return seqs, nil
}

func (s *Spool) append(kind string, data [][]byte) ([]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if len(data) == 0 {
		return nil, nil
	}
	if s.dirty {
		if err := s.rollback(); err != nil {
			return nil, err
		}
	}
	at := s.o.Now().UnixNano()
	seqs := make([]uint64, len(data))
	var buf []byte
	for i, d := range data {
		seqs[i] = s.lastSeq + 1 + uint64(i)
		buf = appendFrame(buf, seqs[i], at, kind, d, i == len(data)-1)
	}
	roll := s.needRoll()
	need := int64(len(buf))
	if roll {
		need += int64(headerLen)
	}
	if disk := s.diskBytes(); disk+need > s.o.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes on disk and %d more would pass the limit of %d", ErrFull, disk, need, s.o.MaxBytes)
	}
	if roll {
		if err := s.newSegment(); err != nil {
			return nil, err
		}
	} else if s.f == nil {
		sg := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(sg.path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("spool: open %s: %w", sg.path, err)
		}
		s.f = f
	}
	sg := &s.segs[len(s.segs)-1]
	if _, err := s.f.WriteAt(buf, sg.size); err != nil {
		return nil, s.failed(fmt.Errorf("spool: write %s at offset %d: %w", sg.path, sg.size, full(err)))
	}
	if err := s.f.Sync(); err != nil {
		return nil, s.failed(fmt.Errorf("spool: sync %s: %w", sg.path, full(err)))
	}
	if s.lastSeq == s.acked {
		s.oldest = time.Unix(0, at).UTC()
	}
	sg.size += int64(len(buf))
	sg.last = seqs[len(seqs)-1]
	s.lastSeq = sg.last
	return seqs, nil
}

// needRoll tells whether the next Append must start a segment.
func (s *Spool) needRoll() bool {
	if len(s.segs) == 0 {
		return true
	}
	sg := s.segs[len(s.segs)-1]
	return sg.version != version2 || sg.last != s.lastSeq || (!sg.empty() && sg.size >= s.o.SegmentBytes)
}

func (s *Spool) diskBytes() int64 {
	var n int64
	for _, sg := range s.segs {
		n += sg.size
	}
	return n
}

// failed undoes what a failed Append wrote, so that neither a later Append
// nor a restart finds part of it. If that fails too, the next Append tries
// again before it writes.
func (s *Spool) failed(err error) error {
	s.dirty = true
	if rerr := s.rollback(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

func (s *Spool) rollback() error {
	sg := s.segs[len(s.segs)-1]
	if err := s.f.Truncate(sg.size); err != nil {
		return fmt.Errorf("spool: undo a failed append: truncate %s to %d: %w", sg.path, sg.size, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("spool: undo a failed append: sync %s: %w", sg.path, err)
	}
	s.dirty = false
	return nil
}

// newSegment starts the segment for Seq lastSeq+1. A newest segment without
// entries (left by an older format, or by a failed Append) gives way to it.
func (s *Spool) newSegment() error {
	if n := len(s.segs); n > 0 && s.segs[n-1].empty() {
		if err := s.closeFile(); err != nil {
			return err
		}
		if err := removeSegment(s.segs[n-1].path); err != nil {
			return err
		}
		s.segs = s.segs[:n-1]
	}
	first := s.lastSeq + 1
	path := filepath.Join(s.dir, segmentName(first))
	// O_EXCL: a file by that name is one Open did not account for, and may
	// hold entries.
	f, err := privfile.OpenFile(path, os.O_WRONLY|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("spool: create %s: %w", path, full(err))
	}
	undo := func(err error) error {
		f.Close()
		os.Remove(path)
		return err
	}
	if _, err := f.Write(header(version2)); err != nil {
		return undo(fmt.Errorf("spool: write %s: %w", path, full(err)))
	}
	if err := f.Sync(); err != nil {
		return undo(fmt.Errorf("spool: sync %s: %w", path, full(err)))
	}
	if err := syncDir(s.dir); err != nil {
		return undo(err)
	}
	if err := s.closeFile(); err != nil {
		return undo(err)
	}
	s.f = f
	s.segs = append(s.segs, segment{first: first, last: first - 1, path: path, version: version2, size: int64(headerLen)})
	return nil
}

func (s *Spool) closeFile() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f, s.dirty = nil, false
	if err := f.Close(); err != nil {
		return fmt.Errorf("spool: close %s: %w", f.Name(), err)
	}
	return nil
}

// full makes a disk out of space an ErrFull.
func full(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}

func removeSegment(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: delete %s: %w", path, err)
	}
	return nil
}

// Peek returns the oldest unacknowledged entries in Seq order, without
// removing them: at most maxEntries, and no more Data bytes than maxBytes
// except that the first entry comes even when it alone is larger.
func (s *Spool) Peek(maxEntries, maxBytes int) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []Entry
	size := 0
	err := s.scanPending(func(e Entry) bool {
		if len(out) >= maxEntries || (len(out) > 0 && size+len(e.Data) > maxBytes) {
			return false
		}
		out = append(out, e)
		size += len(e.Data)
		return true
	})
	return out, err
}

// scanPending calls fn with each unacknowledged entry in order until fn
// returns false.
func (s *Spool) scanPending(fn func(Entry) bool) error {
	start := slices.IndexFunc(s.segs, func(sg segment) bool { return sg.first == s.cursor.first })
	off := s.cursor.off
	if start < 0 || s.segs[start].last <= s.acked {
		start = slices.IndexFunc(s.segs, func(sg segment) bool { return sg.last > s.acked })
		off = int64(headerLen)
	}
	if start < 0 {
		return nil
	}
	for _, sg := range s.segs[start:] {
		more, err := s.scanSegment(sg, off, fn)
		if err != nil || !more {
			return err
		}
		off = int64(headerLen)
	}
	return nil
}

func (s *Spool) scanSegment(sg segment, off int64, fn func(Entry) bool) (more bool, err error) {
	f, err := os.Open(sg.path)
	if err != nil {
		return false, fmt.Errorf("spool: open %s: %w", sg.path, err)
	}
	defer f.Close()
	r := newFrameReader(f, sg.version, off, sg.size)
	for {
		at := r.off
		fr, err := r.next()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("spool: %s at offset %d: %w", sg.path, at, err)
		}
		if fr.Seq <= s.acked {
			continue
		}
		if fr.Seq == s.acked+1 {
			s.cursor = position{first: sg.first, off: at}
		}
		if !fn(fr.Entry) {
			return false, nil
		}
	}
}

// AckThrough records durably that every entry up to seq is delivered, then
// deletes the segments that hold nothing else. Acknowledging a Seq that was
// never appended is an error.
func (s *Spool) AckThrough(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if seq > s.lastSeq {
		return fmt.Errorf("spool: cannot acknowledge entry %d: the last one appended is %d", seq, s.lastSeq)
	}
	if seq <= s.acked {
		return nil
	}
	if err := s.saveState(stateFile{AckedThrough: seq, LastSeq: s.lastSeq}); err != nil {
		return err
	}
	s.acked = seq
	return errors.Join(s.dropAcked(), s.refreshOldest())
}

func (s *Spool) saveState(st stateFile) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("spool: encode state: %w", err)
	}
	tmp := filepath.Join(s.dir, stateName+".tmp")
	f, err := privfile.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("spool: create %s: %w", tmp, full(err))
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("spool: write %s: %w", tmp, full(err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("spool: sync %s: %w", tmp, full(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("spool: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, stateName)); err != nil {
		return fmt.Errorf("spool: replace the state file: %w", err)
	}
	return syncDir(s.dir)
}

// dropAcked deletes the segments whose entries are all acknowledged, the
// newest too: the state file carries the numbering on.
func (s *Spool) dropAcked() error {
	for len(s.segs) > 0 && s.segs[0].last <= s.acked {
		if len(s.segs) == 1 {
			if err := s.closeFile(); err != nil {
				return err
			}
		}
		if err := removeSegment(s.segs[0].path); err != nil {
			return err
		}
		s.segs = s.segs[1:]
	}
	return nil
}

// refreshOldest reads the AppendedAt of the oldest unacknowledged entry.
func (s *Spool) refreshOldest() error {
	s.oldest = time.Time{}
	return s.scanPending(func(e Entry) bool {
		s.oldest = e.AppendedAt
		return false
	})
}

// Stats describes the spool now.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Entries:          s.lastSeq - s.acked,
		OldestAppendedAt: s.oldest,
		LastSeq:          s.lastSeq,
		AckedThrough:     s.acked,
		TruncatedBytes:   s.truncated,
	}
	for _, sg := range s.segs {
		if sg.last > s.acked {
			st.Bytes += sg.size
		}
	}
	return st
}

// Close releases the spool's files and its lock on the directory. Everything
// appended is already durable.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.dirty {
		err = s.rollback()
	}
	return errors.Join(err, s.closeFile(), s.lock.Close())
}
