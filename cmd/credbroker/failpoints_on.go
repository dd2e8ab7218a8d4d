//go:build failpoints

package main

import (
	"fmt"
	"os"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// failpoints stops the daemon at the step named by CREDBROKER_FAILPOINT:
// it prints "FAILPOINT <step>" to stderr and blocks, so a test can SIGKILL
// it exactly there; with CREDBROKER_FAILPOINT_SLEEP (a duration) it sleeps
// that long and carries on instead, so a test can act in the middle of the
// step. Only in binaries built with -tags failpoints.
func failpoints() broker.Hooks {
	step := os.Getenv("CREDBROKER_FAILPOINT")
	if step == "" {
		return nil
	}
	sleep, _ := time.ParseDuration(os.Getenv("CREDBROKER_FAILPOINT_SLEEP"))
	return hang{step: step, sleep: sleep}
}

type hang struct {
	step  string
	sleep time.Duration
}

func (h hang) At(step string) {
	if step != h.step {
		return
	}
	fmt.Fprintf(os.Stderr, "FAILPOINT %s\n", step)
	if h.sleep > 0 {
		time.Sleep(h.sleep)
		return
	}
	select {}
}
