//go:build !failpoints && daemon

package main

import (
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/egress"
)

// failpoints is compiled in only with -tags failpoints (crash tests).
func failpoints() broker.Hooks { return nil }

// testClock is the wall clock outside crash tests.
func testClock() func() time.Time { return nil }

// egressDial is nil (the gateways' own dialer) outside tests.
func egressDial() egress.DialFunc { return nil }
