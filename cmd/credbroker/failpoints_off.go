//go:build !failpoints

package main

import "github.com/credbroker/credbroker/broker"

// failpoints is compiled in only with -tags failpoints (crash tests).
func failpoints() broker.Hooks { return nil }
