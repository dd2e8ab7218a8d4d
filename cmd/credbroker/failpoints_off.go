//go:build !failpoints && daemon

package main

import (
	"time"

	"github.com/credbroker/credbroker/broker"
)

// failpoints is compiled in only with -tags failpoints (crash tests).
func failpoints() broker.Hooks { return nil }

// testClock is the wall clock outside crash tests.
func testClock() func() time.Time { return nil }
