package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// lockTests cover leases.Locker: one holder at a time per name, fn's
// error returned, the lock free again after an error.
var lockTests = []test{
	{"OneHolder", testLockOneHolder},
	{"ReturnsFnError", testLockReturnsFnError},
	{"NamesIndependent", testLockNamesIndependent},
}

// testLockOneHolder: holders of one name never overlap, and a
// read-modify-write under the lock loses no update.
func testLockOneHolder(t *testing.T, s leases.Store) {
	lk := s.(leases.Locker)
	var (
		inside, overlaps atomic.Int32
		counter          int // only touched under the lock
		wg               sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for range 5 {
				err := lk.WithLock(t.Context(), "policy/role-a", func(context.Context) error {
					if inside.Add(1) > 1 {
						overlaps.Add(1)
					}
					c := counter
					time.Sleep(2 * time.Millisecond)
					counter = c + 1
					inside.Add(-1)
					return nil
				})
				if err != nil {
					t.Errorf("WithLock: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d holders of one lock overlapped", n)
	}
	if counter != 20 {
		t.Errorf("read-modify-write under the lock: counter = %d, want 20 (updates lost)", counter)
	}
}

func testLockReturnsFnError(t *testing.T, s leases.Store) {
	lk := s.(leases.Locker)
	boom := errors.New("boom")
	if err := lk.WithLock(t.Context(), "x", func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("WithLock returned %v, want fn's error", err)
	}
	done := make(chan error, 1)
	go func() { done <- lk.WithLock(t.Context(), "x", func(context.Context) error { return nil }) }()
	select {
	case err := <-done:
		must(t, err, "WithLock after an fn error")
	case <-time.After(10 * time.Second):
		t.Fatal("the lock stayed held after fn returned an error")
	}
}

// testLockNamesIndependent: a held lock does not block another name.
func testLockNamesIndependent(t *testing.T, s leases.Store) {
	lk := s.(leases.Locker)
	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = lk.WithLock(context.Background(), "a", func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	defer close(release)
	<-held
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must(t, lk.WithLock(ctx, "b", func(context.Context) error { return nil }), "WithLock(b) while a is held")
}
