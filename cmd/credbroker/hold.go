package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// holdSession binds session id to this process (broker.Client.HoldSession)
// until the returned stop is called: if this process dies, even by
// SIGKILL, the daemon ends the session. A daemon restart lets the hold go,
// so it is taken again, once a second, until the daemon refuses (the
// session ended) or stop is called. Call stop after ending the session.
func holdSession(ctx context.Context, c *broker.Client, id string) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			err := c.HoldSession(ctx, id)
			var re *broker.RemoteError
			if ctx.Err() != nil || errors.As(err, &re) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}
