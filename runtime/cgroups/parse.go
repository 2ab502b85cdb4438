package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// ParseError is a cgroup or proc file that is not in the kernel's format. The
// agent bills from these numbers, so it must never guess: one bad line fails
// the whole read.
type ParseError struct {
	File string // path of the file
	Line int    // 1-based; 0 when the problem is the file as a whole (a missing line)
	Text string // the offending line, shortened
	Err  error
}

// Error names the file and, when there is one, the line.
func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s line %d %q: %v", e.File, e.Line, e.Text, e.Err)
}

// Unwrap gives the underlying error, such as strconv.ErrRange.
func (e *ParseError) Unwrap() error { return e.Err }

// maxQuoted keeps a garbage line from turning into a huge error message.
const maxQuoted = 80

func lineError(file string, n int, line []byte, err error) *ParseError {
	if len(line) > maxQuoted {
		line = append(line[:maxQuoted:maxQuoted], "..."...)
	}
	return &ParseError{File: file, Line: n, Text: string(line), Err: err}
}

// eachLine calls fn for every line of data without its newline, numbered from
// 1, and stops at the first error. A blank line is an error: the kernel writes
// none, so one means the file is not what its name says.
func eachLine(file string, data []byte, fn func(n int, line []byte) error) error {
	n := 0
	for line := range bytes.Lines(data) {
		n++
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if len(line) == 0 {
			return lineError(file, n, line, errors.New("blank line"))
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return nil
}

// parseUint parses a decimal counter: digits only, no sign, no spaces.
func parseUint(b []byte) (uint64, error) {
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return 0, fmt.Errorf("%q is not a counter: %w", b, ne.Err)
		}
		return 0, err
	}
	return v, nil
}

// parseSingle parses a file holding one number on one line
// (cpuacct.usage, memory.current, pids.current ...).
func parseSingle(file string, data []byte) (uint64, error) {
	if len(data) == 0 {
		return 0, &ParseError{File: file, Err: errors.New("empty file")}
	}
	var v uint64
	err := eachLine(file, data, func(n int, line []byte) error {
		if n > 1 {
			return lineError(file, n, line, errors.New("want a single line"))
		}
		var err error
		if v, err = parseUint(line); err != nil {
			return lineError(file, n, line, err)
		}
		return nil
	})
	return v, err
}

// parseLimit parses cgroup v2 memory.max, where "max" means unlimited (0).
func parseLimit(file string, data []byte) (uint64, error) {
	if string(data) == "max\n" || string(data) == "max" {
		return 0, nil
	}
	return parseSingle(file, data)
}

// parseFlatKeyed parses the kernel's flat-keyed format, one "key value" per
// line with a single space (cpu.stat, memory.stat, memory.events,
// memory.oom_control), and hands each pair to visit. Every value must be a
// counter, including those of keys nobody asked for. The key aliases data, so
// visit must not keep it.
func parseFlatKeyed(file string, data []byte, visit func(key []byte, value uint64)) error {
	return eachLine(file, data, func(n int, line []byte) error {
		key, val, ok := bytes.Cut(line, []byte{' '})
		if !ok || len(key) == 0 {
			return lineError(file, n, line, errors.New(`want "key value"`))
		}
		v, err := parseUint(val)
		if err != nil {
			return lineError(file, n, line, err)
		}
		visit(key, v)
		return nil
	})
}

// parseDevice checks a "major:minor" device number.
func parseDevice(b []byte) error {
	major, minor, ok := bytes.Cut(b, []byte{':'})
	if !ok {
		return fmt.Errorf("device %q is not major:minor", b)
	}
	if _, err := parseUint(major); err != nil {
		return fmt.Errorf("device %q: %w", b, err)
	}
	if _, err := parseUint(minor); err != nil {
		return fmt.Errorf("device %q: %w", b, err)
	}
	return nil
}

// add sums counters over devices; an overflow means the input is garbage.
func add(sum, v uint64) (uint64, error) {
	s, carry := bits.Add64(sum, v, 0)
	if carry != 0 {
		return 0, errors.New("sum overflows")
	}
	return s, nil
}

// parseBlkioServiceBytes parses cgroup v1 blkio.throttle.io_service_bytes:
// "8:0 Read 4096" lines per device and operation, then a "Total N" line. It
// sums Read and Write over the device lines; the final Total (all
// operations, reads and writes alike) is checked for form and not used.
func parseBlkioServiceBytes(file string, data []byte) (read, write uint64, err error) {
	err = eachLine(file, data, func(n int, line []byte) error {
		f := bytes.Fields(line)
		switch {
		case len(f) == 2 && string(f[0]) == "Total":
			if _, err := parseUint(f[1]); err != nil {
				return lineError(file, n, line, err)
			}
			return nil
		case len(f) != 3:
			return lineError(file, n, line, errors.New(`want "major:minor Operation bytes" or "Total bytes"`))
		}
		if err := parseDevice(f[0]); err != nil {
			return lineError(file, n, line, err)
		}
		v, err := parseUint(f[2])
		if err != nil {
			return lineError(file, n, line, err)
		}
		// Sync, Async, Discard and the per-device Total overlap Read and Write.
		switch string(f[1]) {
		case "Read":
			read, err = add(read, v)
		case "Write":
			write, err = add(write, v)
		}
		if err != nil {
			return lineError(file, n, line, err)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return read, write, nil
}

// parseIOStat parses cgroup v2 io.stat: per device "8:0 rbytes=1 wbytes=2
// rios=3 ...", and sums rbytes and wbytes over devices. rbytes and wbytes
// must be counters; other keys only need the key=value form, because with
// blkcg debug stats on, the kernel adds keys with decimal values
// (cost.vrate=100.00).
func parseIOStat(file string, data []byte) (read, write uint64, err error) {
	err = eachLine(file, data, func(n int, line []byte) error {
		f := bytes.Fields(line)
		if len(f) == 0 {
			return lineError(file, n, line, errors.New("blank line"))
		}
		if err := parseDevice(f[0]); err != nil {
			return lineError(file, n, line, err)
		}
		for _, kv := range f[1:] {
			key, val, ok := bytes.Cut(kv, []byte{'='})
			if !ok || len(key) == 0 || len(val) == 0 {
				return lineError(file, n, line, fmt.Errorf("%q is not key=value", kv))
			}
			var sum *uint64
			switch string(key) {
			case "rbytes":
				sum = &read
			case "wbytes":
				sum = &write
			default:
				continue
			}
			v, err := parseUint(val)
			if err != nil {
				return lineError(file, n, line, fmt.Errorf("%s: %w", key, err))
			}
			if *sum, err = add(*sum, v); err != nil {
				return lineError(file, n, line, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return read, write, nil
}

// netDevFields is the number of counters per interface in /proc/net/dev
// (8 receive, 8 transmit) since Linux 2.6.
const netDevFields = 16

// parseNetDev parses /proc/<pid>/net/dev: two header lines, then per
// interface "name: rx_bytes rx_packets ... tx_bytes ..." (bytes are the 1st
// and 9th counters). It sums bytes over every interface but the loopback,
// whose traffic never leaves the container.
func parseNetDev(file string, data []byte) (rx, tx uint64, err error) {
	lines := 0
	err = eachLine(file, data, func(n int, line []byte) error {
		lines = n
		if n <= 2 {
			if !bytes.Contains(line, []byte{'|'}) {
				return lineError(file, n, line, errors.New("want a header line"))
			}
			return nil
		}
		// Interface names cannot contain ':' (dev_valid_name), so the first
		// colon ends the name even when a wide counter follows without a space.
		name, counters, ok := bytes.Cut(line, []byte{':'})
		name = bytes.TrimSpace(name)
		if !ok || len(name) == 0 {
			return lineError(file, n, line, errors.New(`want "interface: counters"`))
		}
		f := bytes.Fields(counters)
		if len(f) != netDevFields {
			return lineError(file, n, line, fmt.Errorf("want %d counters, got %d", netDevFields, len(f)))
		}
		var c [netDevFields]uint64
		for i := range f {
			var err error
			if c[i], err = parseUint(f[i]); err != nil {
				return lineError(file, n, line, err)
			}
		}
		if string(name) == "lo" {
			return nil
		}
		var err error
		if rx, err = add(rx, c[0]); err != nil {
			return lineError(file, n, line, err)
		}
		if tx, err = add(tx, c[8]); err != nil {
			return lineError(file, n, line, err)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if lines < 2 {
		return 0, 0, &ParseError{File: file, Err: errors.New("no header lines")}
	}
	return rx, tx, nil
}

// parseProcCgroup parses /proc/<pid>/cgroup ("hierarchy-id:controllers:path"
// per line) and returns the path of the v1 hierarchy that holds cpuacct, or
// failing that the path of the v2 "0::" line. cpuacct wins because a hybrid
// host lists both, and there the counters are in v1 while the unified
// hierarchy is empty.
func parseProcCgroup(file string, data []byte) (string, error) {
	var v1, v2 []byte
	var haveV1, haveV2 bool
	err := eachLine(file, data, func(n int, line []byte) error {
		id, rest, ok1 := bytes.Cut(line, []byte{':'})
		// The path may itself contain colons; only the first two separate.
		controllers, path, ok2 := bytes.Cut(rest, []byte{':'})
		if !ok1 || !ok2 || len(path) == 0 || path[0] != '/' {
			return lineError(file, n, line, errors.New(`want "id:controllers:/path"`))
		}
		hid, err := parseUint(id)
		if err != nil {
			return lineError(file, n, line, err)
		}
		if hid == 0 && len(controllers) == 0 {
			v2, haveV2 = path, true
			return nil
		}
		for c := range bytes.SplitSeq(controllers, []byte{','}) {
			if string(c) == "cpuacct" {
				v1, haveV1 = path, true
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return "", err
	case haveV1:
		return string(v1), nil
	case haveV2:
		return string(v2), nil
	}
	return "", &ParseError{File: file, Err: errors.New("no cpuacct line and no 0:: line")}
}

// parseProcs parses cgroup.procs: one pid a line, none for an empty cgroup.
// A 0 (v2 writes it for a process outside the reader's PID namespace) is
// left out: it names no process the reader can see.
func parseProcs(file string, data []byte) ([]int, error) {
	var pids []int
	err := eachLine(file, data, func(n int, line []byte) error {
		v, err := strconv.ParseUint(string(line), 10, 31)
		if err != nil {
			return lineError(file, n, line, errors.New("want a pid"))
		}
		if v > 0 {
			pids = append(pids, int(v))
		}
		return nil
	})
	return pids, err
}

// parseProcStat reads /proc/<pid>/stat: "pid (comm) state ppid ...", where
// comm may hold spaces and parentheses, so the fields are counted from its
// last ')': the parent is the 4th field, the start time the 22nd (proc(5)).
func parseProcStat(file string, data []byte) (ProcStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ProcStat{}, &ParseError{File: file, Err: errors.New("no ')' closing the command")}
	}
	f := bytes.Fields(data[i+1:])
	const ppid, start = 4 - 3, 22 - 3 // fields after the command, from 0
	if len(f) <= start {
		return ProcStat{}, &ParseError{File: file, Err: fmt.Errorf("%d fields after the command, want at least %d", len(f), start+1)}
	}
	p, err := strconv.ParseUint(string(f[ppid]), 10, 31)
	if err != nil {
		return ProcStat{}, lineError(file, 1, f[ppid], errors.New("the parent is not a pid"))
	}
	st, err := parseUint(f[start])
	if err != nil {
		return ProcStat{}, lineError(file, 1, f[start], err)
	}
	return ProcStat{PPid: int(p), Start: st}, nil
}
