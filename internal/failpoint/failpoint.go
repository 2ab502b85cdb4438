// Package failpoint kills the process on purpose at named moments, so crash
// tests can hit each dangerous instant of the delivery pipeline. Failpoints are
// off unless the agent is started with --failpoint.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// The failpoints of the agent's delivery pipeline.
const (
	// AfterSpoolWrite: records are fsynced in the spool, nothing sent yet.
	AfterSpoolWrite = "after-spool-write"
	// AfterSend: the batch has been sent; the collector's answer is not read.
	AfterSend = "after-send"
	// AfterAck: the collector acknowledged; the spool still holds the batch.
	AfterAck = "after-ack"
)

// Names lists every failpoint.
var Names = []string{AfterSpoolWrite, AfterSend, AfterAck}

// Set is the armed failpoints. The zero value and nil arm none.
type Set struct {
	name  string
	after int64 // kill at this hit (1 = the first)
	hits  atomic.Int64
}

// Parse reads "NAME" or "NAME:N" (kill at the Nth time NAME is reached).
func Parse(spec string) (*Set, error) {
	if spec == "" {
		return nil, nil
	}
	name, n, hasN := strings.Cut(spec, ":")
	known := false
	for _, k := range Names {
		known = known || k == name
	}
	if !known {
		return nil, fmt.Errorf("failpoint: %q is not one of %s", name, strings.Join(Names, ", "))
	}
	s := &Set{name: name, after: 1}
	if hasN {
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("failpoint: %q: the hit count must be a positive integer", spec)
		}
		s.after = v
	}
	return s, nil
}

// Hit marks that name was reached and, if it is armed and its count is due,
// kills the process with SIGKILL: no deferred function, no flush, as a power
// cut or the OOM killer would.
func (s *Set) Hit(name string) {
	if s == nil || s.name != name {
		return
	}
	if s.hits.Add(1) == s.after {
		fmt.Fprintf(os.Stderr, "failpoint %s reached: killing the process\n", name)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
