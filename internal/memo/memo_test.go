package memo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/memo"
)

func TestManyAsksOfOneKeyComputeOnceAndTheAnswerIsKeptWhileFresh(t *testing.T) {
	c := clock.NewManual(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	m := memo.New[int](2, time.Minute, time.Minute, 10, c)
	var computed atomic.Int32
	release := make(chan struct{})
	compute := func(context.Context) (int, error) {
		computed.Add(1)
		<-release
		return 42, nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := m.Get(context.Background(), "caami 2026-12", compute); err != nil || v != 42 {
				t.Errorf("Get = %d, %v", v, err)
			}
		}()
	}
	for computed.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := computed.Load(); n != 1 {
		t.Fatalf("50 asks computed %d times, want once", n)
	}
	m.Get(context.Background(), "caami 2026-12", compute)
	c.Advance(time.Minute - time.Nanosecond)
	m.Get(context.Background(), "caami 2026-12", compute)
	if n := computed.Load(); n != 1 {
		t.Errorf("asks within the minute computed again: %d", n)
	}
	c.Advance(time.Nanosecond)
	m.Get(context.Background(), "caami 2026-12", compute)
	if n := computed.Load(); n != 2 {
		t.Errorf("an ask a minute later: %d computations, want a second", n)
	}
}

func TestAFailureIsNotKeptAndACallerThatLeavesDoesNotStopTheOthers(t *testing.T) {
	m := memo.New[string](1, time.Minute, time.Minute, 10, nil)
	if _, err := m.Get(context.Background(), "k", func(context.Context) (string, error) { return "", errors.New("store down") }); err == nil {
		t.Fatal("a failure answered no error")
	}
	if v, err := m.Get(context.Background(), "k", func(context.Context) (string, error) { return "ok", nil }); err != nil || v != "ok" {
		t.Fatalf("after a failure: %q, %v; want it computed again", v, err)
	}

	started, release := make(chan struct{}), make(chan struct{})
	slow := func(ctx context.Context) (string, error) {
		close(started)
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	leaving, leave := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := m.Get(leaving, "slow", slow)
		first <- err
	}()
	<-started
	second := make(chan string, 1)
	go func() {
		v, _ := m.Get(context.Background(), "slow", slow)
		second <- v
	}()
	leave()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that left got %v", err)
	}
	close(release)
	if v := <-second; v != "done" {
		t.Errorf("the caller that waited got %q, want the computation's answer", v)
	}
}

func TestAtMostWorkersComputeAtOnceAndAFullMemoStillAnswersEachKeyItsOwn(t *testing.T) {
	m := memo.New[int](2, time.Hour, time.Minute, 5, nil)
	var now, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Get(context.Background(), fmt.Sprint(i), func(context.Context) (int, error) {
				n := now.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond) // a computation takes a while
				now.Add(-1)
				return i, nil
			})
		}()
	}
	wg.Wait()
	if n := most.Load(); n > 2 {
		t.Errorf("%d computations at once, want at most 2", n)
	}
	// Twelve keys kept in a memo of five: whatever is kept, each answer is its key's.
	for i := range 12 {
		if v, err := m.Get(context.Background(), fmt.Sprint(i), func(context.Context) (int, error) { return i, nil }); err != nil || v != i {
			t.Errorf("key %d: %d, %v", i, v, err)
		}
	}
}
