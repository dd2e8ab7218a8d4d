//go:build failpoints

package main

import (
	"fmt"
	"os"

	"github.com/credbroker/credbroker/broker"
)

// failpoints stops the daemon at the step named by CREDBROKER_FAILPOINT:
// it prints "FAILPOINT <step>" to stderr and blocks, so a test can SIGKILL
// it exactly there. Only in binaries built with -tags failpoints.
func failpoints() broker.Hooks {
	step := os.Getenv("CREDBROKER_FAILPOINT")
	if step == "" {
		return nil
	}
	return hang(step)
}

type hang string

func (h hang) At(step string) {
	if step != string(h) {
		return
	}
	fmt.Fprintf(os.Stderr, "FAILPOINT %s\n", step)
	select {}
}
