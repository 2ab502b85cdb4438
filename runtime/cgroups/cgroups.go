// Package cgroups reads a container's resource counters straight from its
// cgroup files, for cgroup v1 and the unified cgroup v2 hierarchy. The agent
// samples every container every 10 s, which the Docker stats API is far too
// slow for; reading a dozen small files costs microseconds.
//
// Every counter is cumulative since the cgroup was created; turning samples
// into usage is the caller's business.
package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNotFound means a cgroup, one of its mandatory files, or a process is not
// there. For a container that was running this means it is gone, which the
// agent handles as the end of a run rather than as a failure.
var ErrNotFound = errors.New("not found")

// Stats are one sample of a container's counters. Counters are cumulative
// since the cgroup was created; gauges (usage, working set, limit, pids) are
// the value at the time of the read.
type Stats struct {
	CPUUsageNs            uint64 // total CPU time
	CPUPeriods            uint64 // CFS enforcement periods; 0 without a CPU quota
	CPUThrottledPeriods   uint64
	CPUThrottledNs        uint64
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64 // usage minus inactive file cache, floored at 0 (as cAdvisor and the kubelet compute it)
	MemoryLimitBytes      uint64 // 0 when unlimited
	MemoryPeakBytes       uint64 // v1 memory.max_usage_in_bytes; v2 memory.peak, 0 on kernels without it (before 5.19)
	OOMKills              uint64 // 0 on kernels that do not count them (v1 before 4.13)
	Pids                  uint64 // 0 when the pids controller is not enabled
	BlkioReadBytes        uint64 // summed over devices; 0 when the blkio/io controller is not enabled
	BlkioWriteBytes       uint64
}

// Version is the cgroup hierarchy a Reader reads.
type Version int

// The two cgroup versions. A hybrid host (v1 controllers plus an empty
// unified hierarchy at unified/) counts as V1: its counters live in v1.
const (
	V1 Version = 1
	V2 Version = 2
)

// String gives "v1" or "v2", for logs.
func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("Version(%d)", int(v))
}

// v1Unlimited is the smallest memory.limit_in_bytes that means "no limit" in
// cgroup v1. The kernel writes its page-counter maximum there, which is
// MaxInt64 rounded down to the page size (9223372036854771712 with 4 KiB
// pages, less with 16 or 64 KiB pages); old kernels wrote MaxInt64 or
// MaxUint64. No real limit comes near.
const v1Unlimited = math.MaxInt64 &^ (64<<10 - 1)

// Reader reads the cgroups below one root, normally /sys/fs/cgroup; tests
// point it at a fixture tree. It holds no mutable state, so one Reader may
// serve concurrent reads.
type Reader struct {
	root    string
	version Version
	// The v1 hierarchies, resolved once because their directory names vary:
	// cpu and cpuacct are separate mounts on some hosts and one "cpu,cpuacct"
	// mount (with or without cpu and cpuacct symlinks) on others. Empty on v2.
	cpu, cpuacct, memory, pids, blkio string
}

// NewReader returns a Reader of the cgroups below root, detecting the version:
// v2 when root/cgroup.controllers exists, else v1, which must then have its
// cpu, cpuacct and memory hierarchies below root.
func NewReader(root string) (*Reader, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("cgroup root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("cgroup root %s is not a directory", root)
	}
	r := &Reader{root: root}
	switch _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); {
	case err == nil:
		r.version = V2
		return r, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("detecting the cgroup version: %w", err)
	}
	r.version = V1
	for _, h := range []struct {
		dst   *string
		names []string
	}{
		{&r.cpu, []string{"cpu", "cpu,cpuacct"}},
		{&r.cpuacct, []string{"cpuacct", "cpu,cpuacct"}},
		{&r.memory, []string{"memory"}},
	} {
		if *h.dst, err = findHierarchy(root, h.names); err != nil {
			return nil, err
		}
	}
	// pids and blkio are optional controllers: when they are not mounted
	// their files are simply missing and read as 0.
	r.pids = filepath.Join(root, "pids")
	r.blkio = filepath.Join(root, "blkio")
	return r, nil
}

func findHierarchy(root string, names []string) (string, error) {
	for _, n := range names {
		dir := filepath.Join(root, n)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir, nil
		}
	}
	return "", fmt.Errorf("cgroup v1 root %s has no %s hierarchy", root, strings.Join(names, " or "))
}

// Version reports which cgroup version the Reader detected.
func (r *Reader) Version() Version { return r.version }

// Read reads every counter of the cgroup at path, which is relative to the
// root of each hierarchy (a leading slash, as /proc/<pid>/cgroup writes it, is
// allowed). On v1 the same path is used in every controller, as Docker and
// the kubelet do.
//
// A missing optional file (one that depends on the kernel version or on an
// optional controller: memory.peak, the oom_kill counter, pids, blkio/io)
// leaves its field 0. A missing mandatory file is an error wrapping
// ErrNotFound: the container is gone. A line that is not in the kernel's
// format is a *ParseError.
func (r *Reader) Read(path string) (Stats, error) {
	rel, err := relPath(path)
	if err != nil {
		return Stats{}, err
	}
	// Optional files are read before mandatory ones, and CPU usage last: a
	// cgroup that is removed mid-read then fails on a mandatory file instead
	// of passing for one whose optional counters are 0.
	if r.version == V2 {
		return r.readV2(filepath.Join(r.root, rel))
	}
	return r.readV1(rel)
}

// relPath turns a cgroup path into one that is safe to join below a root.
func relPath(path string) (string, error) {
	rel := strings.TrimPrefix(path, "/")
	if rel == "" {
		return "", errors.New("cgroup path is the root cgroup, not a container's")
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("cgroup path %q leaves the cgroup root", path)
	}
	return filepath.Clean(rel), nil
}

func (r *Reader) readV1(rel string) (Stats, error) {
	var s Stats
	blkio := filepath.Join(r.blkio, rel, "blkio.throttle.io_service_bytes")
	data, err := optional(blkio)
	if err != nil {
		return Stats{}, err
	}
	if s.BlkioReadBytes, s.BlkioWriteBytes, err = parseBlkioServiceBytes(blkio, data); err != nil {
		return Stats{}, err
	}
	if s.Pids, err = readUint(filepath.Join(r.pids, rel, "pids.current"), false); err != nil {
		return Stats{}, err
	}

	mem := filepath.Join(r.memory, rel)
	if s.OOMKills, err = readOOMKills(filepath.Join(mem, "memory.oom_control")); err != nil {
		return Stats{}, err
	}
	if s.MemoryPeakBytes, err = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"), true); err != nil {
		return Stats{}, err
	}
	if s.MemoryLimitBytes, err = readUint(filepath.Join(mem, "memory.limit_in_bytes"), true); err != nil {
		return Stats{}, err
	}
	if s.MemoryLimitBytes >= v1Unlimited {
		s.MemoryLimitBytes = 0
	}
	memStat := filepath.Join(mem, "memory.stat")
	if data, err = mandatory(memStat); err != nil {
		return Stats{}, err
	}
	// total_inactive_file counts the whole subtree, like usage_in_bytes
	// does; inactive_file is this cgroup alone, which is the same for a leaf.
	var total, local uint64
	var haveTotal, haveLocal bool
	if err := parseFlatKeyed(memStat, data, func(k []byte, v uint64) {
		switch string(k) {
		case "total_inactive_file":
			total, haveTotal = v, true
		case "inactive_file":
			local, haveLocal = v, true
		}
	}); err != nil {
		return Stats{}, err
	}
	inactive := total
	if !haveTotal {
		if !haveLocal {
			return Stats{}, &ParseError{File: memStat, Err: errors.New("no total_inactive_file or inactive_file line")}
		}
		inactive = local
	}
	if s.MemoryUsageBytes, err = readUint(filepath.Join(mem, "memory.usage_in_bytes"), true); err != nil {
		return Stats{}, err
	}
	s.MemoryWorkingSetBytes = workingSet(s.MemoryUsageBytes, inactive)

	cpuStat := filepath.Join(r.cpu, rel, "cpu.stat")
	if data, err = mandatory(cpuStat); err != nil {
		return Stats{}, err
	}
	if err := parseFlatKeyed(cpuStat, data, func(k []byte, v uint64) {
		switch string(k) {
		case "nr_periods":
			s.CPUPeriods = v
		case "nr_throttled":
			s.CPUThrottledPeriods = v
		case "throttled_time":
			s.CPUThrottledNs = v
		}
	}); err != nil {
		return Stats{}, err
	}
	if s.CPUUsageNs, err = readUint(filepath.Join(r.cpuacct, rel, "cpuacct.usage"), true); err != nil {
		return Stats{}, err
	}
	return s, nil
}

func (r *Reader) readV2(dir string) (Stats, error) {
	var s Stats
	ioStat := filepath.Join(dir, "io.stat")
	data, err := optional(ioStat)
	if err != nil {
		return Stats{}, err
	}
	if s.BlkioReadBytes, s.BlkioWriteBytes, err = parseIOStat(ioStat, data); err != nil {
		return Stats{}, err
	}
	if s.Pids, err = readUint(filepath.Join(dir, "pids.current"), false); err != nil {
		return Stats{}, err
	}
	if s.MemoryPeakBytes, err = readUint(filepath.Join(dir, "memory.peak"), false); err != nil {
		return Stats{}, err
	}

	if s.OOMKills, err = readOOMKills(filepath.Join(dir, "memory.events")); err != nil {
		return Stats{}, err
	}
	memMax := filepath.Join(dir, "memory.max")
	if data, err = mandatory(memMax); err != nil {
		return Stats{}, err
	}
	if s.MemoryLimitBytes, err = parseLimit(memMax, data); err != nil {
		return Stats{}, err
	}
	memStat := filepath.Join(dir, "memory.stat")
	if data, err = mandatory(memStat); err != nil {
		return Stats{}, err
	}
	var inactive uint64
	var haveInactive bool
	if err := parseFlatKeyed(memStat, data, func(k []byte, v uint64) {
		if string(k) == "inactive_file" {
			inactive, haveInactive = v, true
		}
	}); err != nil {
		return Stats{}, err
	}
	if !haveInactive {
		return Stats{}, &ParseError{File: memStat, Err: errors.New("no inactive_file line")}
	}
	if s.MemoryUsageBytes, err = readUint(filepath.Join(dir, "memory.current"), true); err != nil {
		return Stats{}, err
	}
	s.MemoryWorkingSetBytes = workingSet(s.MemoryUsageBytes, inactive)

	cpuStat := filepath.Join(dir, "cpu.stat")
	if data, err = mandatory(cpuStat); err != nil {
		return Stats{}, err
	}
	// usage_usec is always there; the nr_* and throttled_* lines only when
	// the cpu controller is enabled for the cgroup.
	var usage, throttled uint64
	var haveUsage bool
	if err := parseFlatKeyed(cpuStat, data, func(k []byte, v uint64) {
		switch string(k) {
		case "usage_usec":
			usage, haveUsage = v, true
		case "nr_periods":
			s.CPUPeriods = v
		case "nr_throttled":
			s.CPUThrottledPeriods = v
		case "throttled_usec":
			throttled = v
		}
	}); err != nil {
		return Stats{}, err
	}
	if !haveUsage {
		return Stats{}, &ParseError{File: cpuStat, Err: errors.New("no usage_usec line")}
	}
	var ok bool
	if s.CPUUsageNs, ok = usecToNs(usage); !ok {
		return Stats{}, &ParseError{File: cpuStat, Err: fmt.Errorf("usage_usec %d overflows in ns", usage)}
	}
	if s.CPUThrottledNs, ok = usecToNs(throttled); !ok {
		return Stats{}, &ParseError{File: cpuStat, Err: fmt.Errorf("throttled_usec %d overflows in ns", throttled)}
	}
	return s, nil
}

// workingSet is what the kubelet evicts on and what memory is billed on:
// usage minus the inactive file cache the kernel can drop at no cost. The
// two files are read at slightly different moments, hence the floor.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

func usecToNs(us uint64) (uint64, bool) {
	hi, lo := bits.Mul64(us, 1000)
	return lo, hi == 0
}

// mandatory reads a file that every live cgroup of a container has.
func mandatory(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		if gone(err) {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, err // *fs.PathError names the file
	}
	return data, nil
}

// optional reads a file that older kernels or disabled controllers lack; a
// missing one reads as empty, which every parser turns into zeros.
func optional(name string) ([]byte, error) {
	data, err := mandatory(name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return data, err
}

// readOOMKills reads the oom_kill count of a flat-keyed memory file: v1's
// memory.oom_control or v2's memory.events.
func readOOMKills(name string) (uint64, error) {
	data, err := mandatory(name)
	if err != nil {
		return 0, err
	}
	var kills uint64
	err = parseFlatKeyed(name, data, func(k []byte, v uint64) {
		if string(k) == "oom_kill" {
			kills = v
		}
	})
	return kills, err
}

// readUint reads a file holding one number; an optional file that is
// missing reads as 0.
func readUint(name string, required bool) (uint64, error) {
	read := optional
	if required {
		read = mandatory
	}
	data, err := read(name)
	if err != nil || data == nil {
		return 0, err
	}
	return parseSingle(name, data)
}

// gone tells whether a read failed because its file, cgroup or process no
// longer exists. ENODEV is what a read gets when the cgroup was removed
// between open and read; ESRCH when a process exited in the middle of a
// /proc read.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ESRCH)
}
