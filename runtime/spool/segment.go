package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	magic          = "PMSPOOL"
	headerLen      = len(magic) + 1 // magic and the version byte
	version1       = '1'
	version2       = '2'
	frameHeaderLen = 8
	flagEnd        = 1 << 0
	maxKind        = 64
	// maxEntryLimit caps Options.MaxEntryBytes so that a reader can reject any
	// longer frame as corrupt rather than allocate what a flipped bit asks for.
	maxEntryLimit = 64 << 20
	segPrefix     = "seg-"
	segSuffix     = ".log"
	segDigits     = 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segment is what the Spool remembers of one segment file instead of its
// entries.
type segment struct {
	first, last uint64 // last == first-1 while it holds no entry
	path        string
	version     byte
	size        int64 // bytes of whole Appends, header included; anything past it is not part of the spool
}

func (sg segment) empty() bool { return sg.last < sg.first }

func segmentName(first uint64) string {
	return fmt.Sprintf("%s%0*d%s", segPrefix, segDigits, first, segSuffix)
}

// parseSegmentName accepts only names segmentName makes, so that sorting the
// names sorts the segments.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, segPrefix)
	digits, ok2 := strings.CutSuffix(digits, segSuffix)
	if !ok || !ok2 || len(digits) != segDigits {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	return first, err == nil && first > 0
}

func header(version byte) []byte { return append([]byte(magic), version) }

func bodyMin(version byte) int {
	if version == version1 {
		return 8 + 8 + 1
	}
	return 1 + 8 + 8 + 1
}

// frame is one decoded entry and its place on disk.
type frame struct {
	Entry
	end  bool  // the last entry of its Append (always true in version 1, which did not say)
	size int64 // header included
}

// appendFrame encodes one entry in the current format.
func appendFrame(buf []byte, seq uint64, at int64, kind string, data []byte, end bool) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(bodyMin(version2)+len(kind)+len(data)))
	buf = binary.BigEndian.AppendUint32(buf, 0) // the CRC, once the body is there
	var flags byte
	if end {
		flags = flagEnd
	}
	buf = append(buf, flags)
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	buf = append(buf, byte(len(kind)))
	buf = append(buf, kind...)
	buf = append(buf, data...)
	crc := crc32.Update(crc32.Checksum(buf[start:start+4], castagnoli), castagnoli, buf[start+frameHeaderLen:])
	binary.BigEndian.PutUint32(buf[start+4:], crc)
	return buf
}

// decodeFrame checks and decodes a frame given its header h and body b. Data
// aliases b.
func decodeFrame(version byte, h, b []byte) (frame, error) {
	crc := crc32.Checksum(b, castagnoli)
	if version != version1 {
		// Version 2 covers the length too, so a flipped length bit cannot pass.
		crc = crc32.Update(crc32.Checksum(h[:4], castagnoli), castagnoli, b)
	}
	if crc != binary.BigEndian.Uint32(h[4:]) {
		return frame{}, errors.New("checksum mismatch")
	}
	fr := frame{end: true, size: int64(frameHeaderLen + len(b))}
	if version != version1 {
		if b[0]&^flagEnd != 0 {
			return frame{}, fmt.Errorf("unknown flags %#x", b[0])
		}
		fr.end = b[0]&flagEnd != 0
		b = b[1:]
	}
	kl := int(b[16])
	if kl == 0 || kl > maxKind || 17+kl > len(b) {
		return frame{}, fmt.Errorf("kind length %d does not fit", kl)
	}
	fr.Seq = binary.BigEndian.Uint64(b[:8])
	fr.AppendedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:16]))).UTC()
	fr.Kind = string(b[17 : 17+kl])
	fr.Data = b[17+kl:]
	return fr, nil
}

// frameReader reads the frames of one segment between two offsets.
type frameReader struct {
	r          *bufio.Reader
	version    byte
	off, limit int64
}

func newFrameReader(f *os.File, version byte, off, limit int64) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(io.NewSectionReader(f, off, limit-off), 64<<10), version: version, off: off, limit: limit}
}

// next returns the frame at fr.off, or io.EOF exactly at the limit. A frame
// running past the limit is an error: up to the limit is all there is.
func (fr *frameReader) next() (frame, error) {
	left := fr.limit - fr.off
	if left == 0 {
		return frame{}, io.EOF
	}
	if left < frameHeaderLen {
		return frame{}, fmt.Errorf("%d bytes are too few for a frame", left)
	}
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return frame{}, fmt.Errorf("read frame header: %w", err)
	}
	n := int64(binary.BigEndian.Uint32(h[:4]))
	if n < int64(bodyMin(fr.version)) || n > int64(bodyMin(fr.version)+maxKind+maxEntryLimit) {
		return frame{}, fmt.Errorf("frame length %d out of range", n)
	}
	if n > left-frameHeaderLen {
		return frame{}, fmt.Errorf("a frame of %d bytes with only %d left", n, left-frameHeaderLen)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return frame{}, fmt.Errorf("read frame: %w", err)
	}
	f, err := decodeFrame(fr.version, h[:], b)
	if err != nil {
		return frame{}, err
	}
	fr.off += f.size
	return f, nil
}

// recoverSegment reads a whole segment, checks every frame and that Seqs run
// on from its name, and cuts off a torn tail if it is the newest segment. It
// adds what it cut off to *truncated.
func recoverSegment(sg segment, newest bool, truncated *int64) (segment, error) {
	f, err := os.OpenFile(sg.path, os.O_RDWR, 0)
	if err != nil {
		return sg, fmt.Errorf("spool: open %s: %w", sg.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sg, fmt.Errorf("spool: stat %s: %w", sg.path, err)
	}
	size := fi.Size()
	h := make([]byte, headerLen)
	n, _ := f.ReadAt(h, 0)
	h = h[:n]
	switch {
	case n == headerLen && string(h[:len(magic)]) == magic && (h[len(magic)] == version1 || h[len(magic)] == version2):
		sg.version = h[len(magic)]
	case n == headerLen && string(h[:len(magic)]) == magic:
		return sg, fmt.Errorf("spool: %s at offset %d: format version %q is not one this agent reads", sg.path, len(magic), h[len(magic)])
	case newest && size <= int64(headerLen):
		// A crash while the segment was being created: no entry was ever
		// written to it, since entries follow only a synced header.
		if err := resetSegment(f); err != nil {
			return sg, fmt.Errorf("spool: reset %s: %w", sg.path, err)
		}
		*truncated += size
		sg.version, sg.size, sg.last = version2, int64(headerLen), sg.first-1
		return sg, nil
	default:
		return sg, fmt.Errorf("spool: %s at offset 0: not a spool segment header: %q", sg.path, h)
	}

	r := newFrameReader(f, sg.version, int64(headerLen), size)
	whole, wholeLast := int64(headerLen), sg.first-1 // the end of the last whole Append
	pos, last := whole, wholeLast
	var bad error
	for {
		fr, err := r.next()
		if err == io.EOF {
			break
		}
		if err == nil && fr.Seq != last+1 {
			err = fmt.Errorf("sequence number %d where %d belongs", fr.Seq, last+1)
		}
		if err != nil {
			bad = err
			break
		}
		pos, last = pos+fr.size, fr.Seq
		if fr.end {
			whole, wholeLast = pos, last
		}
	}
	if whole < size {
		switch {
		case !newest && bad != nil:
			return sg, fmt.Errorf("spool: %s at offset %d: %w", sg.path, pos, bad)
		case !newest:
			return sg, fmt.Errorf("spool: %s at offset %d: the Append of entries %d to %d has no end", sg.path, whole, wholeLast+1, last)
		case bad != nil:
			later, err := laterAppend(f, sg.version, pos, size, last)
			if err != nil {
				return sg, fmt.Errorf("spool: %s: %w", sg.path, err)
			}
			if later >= 0 {
				return sg, fmt.Errorf("spool: %s at offset %d: %w, yet whole entries of a later Append follow at offset %d: corruption, not a torn write", sg.path, pos, bad, later)
			}
		}
		if err := f.Truncate(whole); err != nil {
			return sg, fmt.Errorf("spool: cut the torn tail of %s at offset %d: %w", sg.path, whole, err)
		}
		if err := f.Sync(); err != nil {
			return sg, fmt.Errorf("spool: sync %s: %w", sg.path, err)
		}
		*truncated += size - whole
	}
	sg.size, sg.last = whole, wholeLast
	return sg, nil
}

func resetSegment(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(header(version2), 0); err != nil {
		return err
	}
	return f.Sync()
}

// laterAppend tells a torn write from corruption after a bad frame at offset
// bad: it returns the offset of a whole frame that cannot belong to the Append
// in flight at the crash, or -1. A crash tears only that Append, because the
// next one starts after it was synced; so valid frames past the bad spot that
// belong to two Appends (an end flag then more, or two append times) prove that
// the bad spot was once whole and acknowledged.
func laterAppend(f *os.File, version byte, bad, size int64, after uint64) (int64, error) {
	tail := make([]byte, size-bad)
	if _, err := f.ReadAt(tail, bad); err != nil {
		return -1, fmt.Errorf("read past offset %d: %w", bad, err)
	}
	var (
		seen    bool
		endSeen bool
		at      time.Time
	)
	for q := 1; q+frameHeaderLen <= len(tail); {
		n := int(binary.BigEndian.Uint32(tail[q:]))
		if n >= bodyMin(version) && n <= len(tail)-q-frameHeaderLen {
			fr, err := decodeFrame(version, tail[q:q+frameHeaderLen], tail[q+frameHeaderLen:q+frameHeaderLen+n])
			if err == nil && fr.Seq > after {
				if seen && (endSeen || !fr.AppendedAt.Equal(at)) {
					return bad + int64(q), nil
				}
				seen, at = true, fr.AppendedAt
				endSeen = fr.end && version != version1
				q += int(fr.size)
				continue
			}
		}
		q++
	}
	return -1, nil
}
