// Package spool is the agent's durable on-disk queue: what it produced stays
// here, fsynced, until the collector acknowledged it.
//
// Format: segment files seg-<first seq, 20 digits>.log, each starting with the
// 8-byte magic "PMSPOOL1", then frames:
//
//	uint32 length of the payload | uint32 CRC-32C of the payload | payload
//	payload = uint64 seq | int64 appended-at (Unix ns) | uint8 kind length | kind | data
//
// all big-endian. state.json records the acknowledged watermark and the last
// sequence number ever written, so numbers are never reused. A torn or corrupt
// tail of the newest segment (a crash mid-write) is cut off on Open; corruption
// anywhere else is an error, because those bytes may be money.
package spool

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Entry is one spooled item.
type Entry struct {
	// Seq is assigned by Append: strictly increasing, never reused.
	Seq        uint64
	Kind       string
	AppendedAt time.Time
	Data       []byte
}

// Options configure a Spool. Zero values take the defaults.
type Options struct {
	// SegmentBytes rolls to a new segment past this size (default 8 MiB).
	SegmentBytes int64
	// MaxBytes bounds the spool on disk; Append beyond it fails with ErrFull (default 1 GiB).
	MaxBytes int64
	// MaxEntryBytes bounds one entry's data (default 1 MiB).
	MaxEntryBytes int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AfterAppend, if set, runs once appended entries are durable, before
	// Append returns (a failpoint for crash tests).
	AfterAppend func()
}

// Stats describe the spool.
type Stats struct {
	// Entries and Bytes not yet acknowledged (Bytes counts whole segments).
	Entries uint64
	Bytes   int64
	// OldestAppendedAt is when the oldest pending entry was appended (zero if none).
	OldestAppendedAt time.Time
	LastSeq          uint64
	AckedThrough     uint64
	// TruncatedBytes is what Open cut off a torn tail.
	TruncatedBytes int64
}

// Errors.
var (
	ErrFull   = errors.New("spool full")
	ErrClosed = errors.New("spool closed")
)

const (
	magic       = "PMSPOOL1"
	frameHeader = 8
	maxKind     = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	first, last uint64 // last == first-1 when empty
	path        string
	size        int64
}

// Spool is a durable FIFO. It is safe for concurrent use.
type Spool struct {
	dir string
	o   Options

	mu        sync.Mutex
	segs      []segment
	f         *os.File // the newest segment, open for appending
	lastSeq   uint64
	acked     uint64
	oldest    time.Time
	truncated int64
	closed    bool
}

type stateFile struct {
	AckedThrough uint64 `json:"acked_through"`
	LastSeq      uint64 `json:"last_seq"`
}

// Open opens (creating if needed) the spool in dir and recovers it after a crash.
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
	// Space comes back a whole segment at a time: keep segments small next to
	// the limit, or a half-delivered segment could hold the spool full.
	o.SegmentBytes = min(o.SegmentBytes, max(o.MaxBytes/8, 1))
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	s := &Spool{dir: dir, o: o}
	if b, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil {
		var st stateFile
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("spool: %s/state.json is corrupt: %w", dir, err)
		}
		s.acked, s.lastSeq = st.AckedThrough, st.LastSeq
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("spool: read state: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		return nil, fmt.Errorf("spool: list segments: %w", err)
	}
	slices.Sort(names)
	for i, name := range names {
		seg, err := s.recover(name, i == len(names)-1)
		if err != nil {
			return nil, err
		}
		s.segs = append(s.segs, seg)
		s.lastSeq = max(s.lastSeq, seg.last)
	}
	if err := s.dropAcked(); err != nil {
		return nil, err
	}
	if len(s.segs) == 0 {
		if err := s.newSegment(); err != nil {
			return nil, err
		}
	} else {
		last := s.segs[len(s.segs)-1]
		if s.f, err = os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
			return nil, fmt.Errorf("spool: open %s: %w", last.path, err)
		}
	}
	s.refreshOldest()
	return s, nil
}

// recover scans a segment. A bad frame in the newest segment is a torn write:
// it and what follows are cut off.
func (s *Spool) recover(path string, newest bool) (segment, error) {
	first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "seg-"), ".log"), 10, 64)
	if err != nil {
		return segment{}, fmt.Errorf("spool: %s is not a segment name", path)
	}
	seg := segment{first: first, last: first - 1, path: path}
	f, err := os.Open(path)
	if err != nil {
		return segment{}, fmt.Errorf("spool: open %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var off int64
	head := make([]byte, len(magic))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != magic {
		if !newest {
			return segment{}, fmt.Errorf("spool: %s: bad header", path)
		}
		// A crash while creating the segment: start it afresh.
		return seg, s.rewriteHeader(path, &seg)
	}
	off = int64(len(magic))
	for {
		e, n, err := readFrame(r)
		if err == io.EOF {
			break
		}
		if err == nil && e.Seq != seg.last+1 {
			err = fmt.Errorf("sequence %d after %d", e.Seq, seg.last)
		}
		if err != nil {
			if !newest {
				return segment{}, fmt.Errorf("spool: %s at offset %d: %w", path, off, err)
			}
			st, serr := os.Stat(path)
			if serr != nil {
				return segment{}, fmt.Errorf("spool: %s: %w", path, serr)
			}
			if terr := os.Truncate(path, off); terr != nil {
				return segment{}, fmt.Errorf("spool: cut torn tail of %s at %d: %w", path, off, terr)
			}
			s.truncated += st.Size() - off
			break
		}
		seg.last = e.Seq
		off += n
	}
	seg.size = off
	return seg, nil
}

func (s *Spool) rewriteHeader(path string, seg *segment) error {
	if err := os.WriteFile(path, []byte(magic), 0o640); err != nil {
		return fmt.Errorf("spool: reset %s: %w", path, err)
	}
	seg.size = int64(len(magic))
	return nil
}

// readFrame reads one frame; io.EOF only at a clean end.
func readFrame(r io.Reader) (Entry, int64, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			return Entry{}, 0, io.EOF
		}
		return Entry{}, 0, fmt.Errorf("torn frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n < 17 || n > 64<<20 {
		return Entry{}, 0, fmt.Errorf("frame length %d out of range", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return Entry{}, 0, fmt.Errorf("torn frame: %w", err)
	}
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return Entry{}, 0, errors.New("checksum mismatch")
	}
	kl := int(p[16])
	if 17+kl > len(p) {
		return Entry{}, 0, errors.New("kind longer than the frame")
	}
	e := Entry{Seq: binary.BigEndian.Uint64(p[:8]), AppendedAt: time.Unix(0, int64(binary.BigEndian.Uint64(p[8:16]))).UTC(),
		Kind: string(p[17 : 17+kl]), Data: p[17+kl:]}
	return e, int64(frameHeader) + int64(n), nil
}

func appendFrame(buf []byte, e Entry) []byte {
	payload := make([]byte, 0, 17+len(e.Kind)+len(e.Data))
	payload = binary.BigEndian.AppendUint64(payload, e.Seq)
	payload = binary.BigEndian.AppendUint64(payload, uint64(e.AppendedAt.UnixNano()))
	payload = append(payload, byte(len(e.Kind)))
	payload = append(payload, e.Kind...)
	payload = append(payload, e.Data...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(payload, castagnoli))
	return append(buf, payload...)
}

// newSegment starts a segment for the next sequence number.
func (s *Spool) newSegment() error {
	first := s.lastSeq + 1
	path := filepath.Join(s.dir, fmt.Sprintf("seg-%020d.log", first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: create %s: %w", path, err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		return fmt.Errorf("spool: write %s: %w", path, full(err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("spool: sync %s: %w", path, full(err))
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f = f
	s.segs = append(s.segs, segment{first: first, last: first - 1, path: path, size: int64(len(magic))})
	return nil
}

// full marks ENOSPC as ErrFull.
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

// Append adds entries of one kind, all or nothing, and returns their sequence
// numbers once they are on disk.
func (s *Spool) Append(kind string, data ...[]byte) ([]uint64, error) {
	if kind == "" || len(kind) > maxKind {
		return nil, fmt.Errorf("spool: kind %q must be 1-%d bytes", kind, maxKind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if len(data) == 0 {
		return nil, nil
	}
	now := s.o.Now()
	var buf []byte
	seqs := make([]uint64, len(data))
	for i, d := range data {
		if len(d) > s.o.MaxEntryBytes {
			return nil, fmt.Errorf("spool: entry of %d bytes exceeds the limit of %d", len(d), s.o.MaxEntryBytes)
		}
		seqs[i] = s.lastSeq + 1 + uint64(i)
		buf = appendFrame(buf, Entry{Seq: seqs[i], Kind: kind, AppendedAt: now, Data: d})
	}
	if s.diskBytes()+int64(len(buf)) > s.o.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes on disk, %d more would pass the limit of %d", ErrFull, s.diskBytes(), len(buf), s.o.MaxBytes)
	}
	if s.segs[len(s.segs)-1].size >= s.o.SegmentBytes {
		if err := s.newSegment(); err != nil {
			return nil, err
		}
	}
	seg := &s.segs[len(s.segs)-1]
	if _, err := s.f.Write(buf); err != nil {
		s.f.Truncate(seg.size) // leave no partial entry behind
		return nil, fmt.Errorf("spool: write %s: %w", seg.path, full(err))
	}
	if err := s.f.Sync(); err != nil {
		s.f.Truncate(seg.size)
		return nil, fmt.Errorf("spool: sync %s: %w", seg.path, full(err))
	}
	seg.size += int64(len(buf))
	seg.last = seqs[len(seqs)-1]
	if s.lastSeq == s.acked {
		s.oldest = now
	}
	s.lastSeq = seg.last
	if s.o.AfterAppend != nil {
		s.o.AfterAppend()
	}
	return seqs, nil
}

func (s *Spool) diskBytes() int64 {
	var n int64
	for _, sg := range s.segs {
		n += sg.size
	}
	return n
}

// Peek returns up to maxEntries of the oldest unacknowledged entries, in order,
// within maxBytes of data (but at least one entry when any is pending).
func (s *Spool) Peek(maxEntries, maxBytes int) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []Entry
	size := 0
	for _, sg := range s.segs {
		if sg.last <= s.acked {
			continue
		}
		done, err := s.scan(sg, func(e Entry) bool {
			if e.Seq <= s.acked {
				return true
			}
			if len(out) >= maxEntries || (len(out) > 0 && size+len(e.Data) > maxBytes) {
				return false
			}
			out = append(out, e)
			size += len(e.Data)
			return true
		})
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
	}
	return out, nil
}

// scan reads sg's frames until fn returns false (then done is true).
func (s *Spool) scan(sg segment, fn func(Entry) bool) (done bool, err error) {
	f, err := os.Open(sg.path)
	if err != nil {
		return false, fmt.Errorf("spool: open %s: %w", sg.path, err)
	}
	defer f.Close()
	r := bufio.NewReader(io.LimitReader(f, sg.size))
	if _, err := r.Discard(len(magic)); err != nil {
		return false, fmt.Errorf("spool: read %s: %w", sg.path, err)
	}
	for {
		e, _, err := readFrame(r)
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("spool: read %s: %w", sg.path, err)
		}
		if !fn(e) {
			return true, nil
		}
	}
}

// AckThrough marks every entry up to seq as delivered, durably, and deletes
// segments that hold nothing else.
func (s *Spool) AckThrough(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	seq = min(seq, s.lastSeq)
	if seq <= s.acked {
		return nil
	}
	b, _ := json.Marshal(stateFile{AckedThrough: seq, LastSeq: s.lastSeq})
	tmp := filepath.Join(s.dir, "state.json.tmp")
	if err := writeSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "state.json")); err != nil {
		return fmt.Errorf("spool: save state: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.acked = seq
	if err := s.dropAcked(); err != nil {
		return err
	}
	s.refreshOldest()
	return nil
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("spool: write %s: %w", path, full(err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("spool: sync %s: %w", path, full(err))
	}
	return f.Close()
}

// dropAcked deletes fully acknowledged segments. When even the newest one is
// fully acknowledged, a fresh segment takes over first, so its space comes back
// too (state.json carries the numbering on).
func (s *Spool) dropAcked() error {
	if n := len(s.segs); n > 0 && s.f != nil {
		if last := s.segs[n-1]; last.last >= last.first && last.last <= s.acked {
			if err := s.newSegment(); err != nil {
				return err
			}
		}
	}
	for len(s.segs) > 1 && s.segs[0].last <= s.acked {
		if err := os.Remove(s.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: delete %s: %w", s.segs[0].path, err)
		}
		s.segs = s.segs[1:]
	}
	return nil
}

// refreshOldest reads the append time of the oldest pending entry.
func (s *Spool) refreshOldest() {
	s.oldest = time.Time{}
	for _, sg := range s.segs {
		if sg.last <= s.acked {
			continue
		}
		s.scan(sg, func(e Entry) bool {
			if e.Seq <= s.acked {
				return true
			}
			s.oldest = e.AppendedAt
			return false
		})
		return
	}
}

// Stats describes the spool now.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Entries: s.lastSeq - s.acked, LastSeq: s.lastSeq, AckedThrough: s.acked, OldestAppendedAt: s.oldest, TruncatedBytes: s.truncated}
	for _, sg := range s.segs {
		if sg.last > s.acked {
			st.Bytes += sg.size
		}
	}
	return st
}

// Close closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}
