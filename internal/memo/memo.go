// Package memo computes expensive answers once: one computation per key at a
// time however many ask for it, at most a few computations at once, each
// answer kept a short while. The collector's tenant-facing figures (the cost
// so far, the SLA report) are scans of a month of records; without it, any
// institution reloading a page could keep the server's cores busy.
package memo

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/paasmeter/paasmeter/internal/clock"
)

// Memo keeps the answers of one kind.
type Memo[V any] struct {
	workers chan struct{}
	fresh   time.Duration
	timeout time.Duration
	max     int
	clock   clock.Clock
	group   singleflight.Group
	mu      sync.Mutex
	kept    map[string]kept[V]
}

type kept[V any] struct {
	v  V
	at time.Time
}

// New keeps answers for fresh, computes at most workers at once, each within
// timeout, and keeps at most max answers (dropping the stale ones, then all,
// when full). c defaults to the wall clock.
func New[V any](workers int, fresh, timeout time.Duration, max int, c clock.Clock) *Memo[V] {
	if c == nil {
		c = clock.System{}
	}
	return &Memo[V]{workers: make(chan struct{}, workers), fresh: fresh, timeout: timeout, max: max, clock: c, kept: map[string]kept[V]{}}
}

// Get returns key's answer: a fresh kept one, the one being computed, or
// compute's. The computation outlives ctx (others may be waiting for it),
// bounded by the timeout; a failed one is not kept.
func (m *Memo[V]) Get(ctx context.Context, key string, compute func(context.Context) (V, error)) (V, error) {
	if v, ok := m.current(key); ok {
		return v, nil
	}
	ch := m.group.DoChan(key, func() (any, error) {
		// A computation that ended between the look above and this one
		// kept its answer.
		if v, ok := m.current(key); ok {
			return v, nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.timeout)
		defer cancel()
		select {
		case m.workers <- struct{}{}:
			defer func() { <-m.workers }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		v, err := compute(ctx)
		if err != nil {
			return nil, err
		}
		m.keep(key, v)
		return v, nil
	})
	var zero V
	select {
	case res := <-ch:
		if res.Err != nil {
			return zero, res.Err
		}
		return res.Val.(V), nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// current is the answer kept under key, while fresh.
func (m *Memo[V]) current(key string) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.kept[key]
	if !ok || m.clock.Now().Sub(k.at) >= m.fresh {
		var zero V
		return zero, false
	}
	return k.v, true
}

func (m *Memo[V]) keep(key string, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if len(m.kept) >= m.max {
		for k, e := range m.kept {
			if now.Sub(e.at) >= m.fresh {
				delete(m.kept, k)
			}
		}
		if len(m.kept) >= m.max {
			clear(m.kept)
		}
	}
	m.kept[key] = kept[V]{v: v, at: now}
}
