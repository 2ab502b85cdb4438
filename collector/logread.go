package collector

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/collector/route"
)

// readSlots bounds the log reads in flight, per tenant and in all. Reads
// have slots of their own, apart from the ingest slots, so that neither side
// can starve the other; and one tenant's reads cannot take them all.
type readSlots struct {
	mu        sync.Mutex
	perTenant int
	total     int
	busy      map[string]int
	all       int
}

func newReadSlots(perTenant, total int) *readSlots {
	return &readSlots{perTenant: perTenant, total: total, busy: map[string]int{}}
}

// acquire takes a slot for tenant. When none is free it names the limit
// that refused the read, as a configuration key, and its value.
func (r *readSlots) acquire(tenant string) (release func(), key string, limit int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.busy[tenant] >= r.perTenant:
		return nil, readRefusedPerTenant, r.perTenant
	case r.all >= r.total:
		return nil, readRefusedTotal, r.total
	}
	r.busy[tenant]++
	r.all++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.all--
			if r.busy[tenant]--; r.busy[tenant] == 0 {
				delete(r.busy, tenant) // the map holds reads in flight only
			}
		})
	}, "", 0
}

// The reasons of paasmeter_collector_log_read_refusals_total: the
// collector.logs keys of the limits.
const (
	readRefusedBytes     = "read_rate_bytes"
	readRefusedPerTenant = "max_concurrent_reads_per_tenant"
	readRefusedTotal     = "max_concurrent_reads"
)

// readSlot admits a read of tenant: while the tenant's read budget
// (read_rate_bytes) is not overdrawn, it takes a read slot. Otherwise it
// answers 429 naming the limit and returns false. A read refused is not
// queued: a client retries after Retry-After, when reads that stream to live
// clients have likely moved on. The caller calls done with the bytes it sent.
//
// An answer's size is known only once it is sent, so a read spends the
// budget afterwards and may overdraw it, by at most max_response_bytes per
// read in flight; the tenant's next reads wait until the debt is paid. The
// budget bounds the CPU one institution's reads take (scanning, encoding,
// sending), which their concurrency alone does not: two reads at a time
// that follow each other without pause kept a core busy.
func (s *Server) readSlot(w http.ResponseWriter, tenant string) (done func(sent int), ok bool) {
	now := s.clock.Now()
	budget := s.readBytes.get(tenant, now)
	if left := budget.TokensAt(now); left <= 0 {
		wait := time.Duration(-left / float64(budget.Limit()) * float64(time.Second))
		s.metrics.readRefusals.WithLabelValues(tenant, readRefusedBytes).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter(wait)/time.Second)))
		route.WriteError(w, http.StatusTooManyRequests,
			fmt.Sprintf("log read budget of tenant %s spent: collector.logs.read_rate_bytes is %d bytes/sec (bursts of read_burst_bytes, %d); retry after %s",
				tenant, s.cfg.Logs.ReadRateBytes, s.cfg.Logs.ReadBurstBytes, retryAfter(wait)),
			map[string]int{"read_rate_bytes": s.cfg.Logs.ReadRateBytes, "read_burst_bytes": s.cfg.Logs.ReadBurstBytes})
		return nil, false
	}
	release, key, limit := s.reads.acquire(tenant)
	if release == nil {
		s.metrics.readRefusals.WithLabelValues(tenant, key).Inc()
		w.Header().Set("Retry-After", "1")
		route.WriteError(w, http.StatusTooManyRequests,
			fmt.Sprintf("too many log reads in flight (tenant %s): collector.logs.%s is %d; retry when one has finished", tenant, key, limit),
			map[string]int{key: limit})
		return nil, false
	}
	return func(sent int) {
		release()
		// Validate keeps the burst above an answer's size; the reservation
		// is never waited for: it is the debt.
		budget.ReserveN(s.clock.Now(), min(sent, s.cfg.Logs.ReadBurstBytes))
	}, true
}

// deliverBy bounds how long a read may take to reach its client, so that a
// client that stops reading gives its read slot back. A connection's
// deadline is the kernel's, in real time, not the injected clock's.
func (s *Server) deliverBy(w http.ResponseWriter) {
	// An error means the writer cannot take deadlines (a test recorder).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.Logs.ReadTimeout))
}

// comma separates the parts of an answer.
var comma = []byte(",")

// answerTailRoom is the room kept in a response's byte budget for what
// follows its last line: closing brackets, the next cursor or a warning.
const answerTailRoom = 1024

// streamedAnswer writes a JSON answer part by part as a store scan hands
// lines over, within the byte budget logs.max_response_bytes, so a read's
// memory stays a chunk of the store's lines and a write buffer whatever its
// page. The status and head are written with the first part, so a scan that
// fails before any line can still be answered 503.
type streamedAnswer struct {
	w       http.ResponseWriter
	out     *bufio.Writer
	head    []byte
	budget  int // for the head and the parts; answerTailRoom is kept out
	written int
	parts   int
	started bool
	err     error // the client's connection failed
	enc     bytes.Buffer
}

// newStreamedAnswer starts an answer whose JSON is empty, a value whose
// encoding ends with the closing brackets in tail: the parts go before them.
func newStreamedAnswer(w http.ResponseWriter, empty any, tail string, maxBytes int) *streamedAnswer {
	a := &streamedAnswer{w: w, budget: maxBytes - answerTailRoom}
	head := a.marshal(empty)
	a.head = bytes.Clone(bytes.TrimSuffix(head, []byte(tail)))
	return a
}

// marshal encodes v as route.WriteJSON does, into a buffer reused for each
// part: the result is valid until the next call.
func (a *streamedAnswer) marshal(v any) []byte {
	a.enc.Reset()
	enc := json.NewEncoder(&a.enc)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the answers' types always encode
	return bytes.TrimSuffix(a.enc.Bytes(), []byte("\n"))
}

func (a *streamedAnswer) start() {
	a.started = true
	a.w.Header().Set("Content-Type", "application/json")
	a.w.Header().Set("X-Content-Type-Options", "nosniff")
	a.w.WriteHeader(http.StatusOK)
	a.out = bufio.NewWriterSize(a.w, 32<<10)
	a.write(a.head)
}

func (a *streamedAnswer) write(b []byte) {
	if a.err == nil {
		_, a.err = a.out.Write(b)
		a.written += len(b)
	}
}

// add writes the parts of one line, the separator first, unless they would
// pass the budget. The first line is always written: Validate keeps the
// budget above the longest line's encoding. It reports whether the line was
// written, so that it can be a scan's take.
func (a *streamedAnswer) add(sep, part []byte) bool {
	if !a.started {
		a.start()
	} else if a.written+len(sep)+len(part) > a.budget {
		return false
	}
	a.write(sep)
	a.write(part)
	a.parts++
	return a.err == nil
}

// finishAnswer writes tail and sends what is buffered. When the scan failed it
// answers 503 if nothing was sent yet; otherwise it aborts the connection,
// so the client sees a broken answer rather than a short valid one.
func (s *Server) finishAnswer(a *streamedAnswer, tail string, scanErr error, tenant string) {
	if scanErr != nil {
		s.log.Error("log query failed", "tenant", tenant, "err", scanErr)
		if !a.started {
			route.WriteError(a.w, http.StatusServiceUnavailable, "log store unavailable", nil)
			return
		}
		panic(http.ErrAbortHandler)
	}
	if !a.started {
		a.start()
	}
	a.write([]byte(tail))
	if a.err == nil {
		a.err = a.out.Flush()
	}
	if a.err != nil {
		s.log.Debug("log answer not delivered", "tenant", tenant, "err", a.err)
	}
}

// budgetWarning is what an answer cut by the byte budget says.
func (s *Server) budgetWarning(lines int, howToGoOn string) string {
	return fmt.Sprintf("answer cut after %d line(s) at collector.logs.max_response_bytes (%d bytes); %s", lines, s.cfg.Logs.MaxResponseBytes, howToGoOn)
}
