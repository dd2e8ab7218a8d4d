package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker"
)

// runWithSession runs argv with the session's environment and ends the
// session when it exits, whatever the reason. Signals to us go to the child.
func runWithSession(ctx context.Context, g *globalOpts, c *broker.Client, si broker.SessionInfo, argv []string) (err error) {
	defer func() {
		// End the session even if our own context was cancelled.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if _, endErr := c.EndSession(ectx, si.ID, "command exited"); endErr != nil {
			fmt.Fprintf(g.errOut, "credbroker: ending session %s: %v\n", si.ID, endErr)
			if err == nil {
				err = endErr
			}
			return
		}
		fmt.Fprintf(g.errOut, "credbroker: session %s ended, credentials revoked\n", si.ID)
	}()
	loaded, err := agentenv.LoadSession(si.Dir, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errSessionUnusable, err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("command %q: %w", argv[0], err)
	}
	// Not CommandContext: on SIGINT/SIGTERM the child gets the signal and
	// decides; it is not killed outright by our context.
	cmd := exec.Command(path, argv[1:]...) //nolint:noctx // see above
	cmd.Env = agentenv.BuildEnv(os.Environ(), loaded, nil)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = g.in, g.out, g.errOut
	// Stop treating SIGINT/SIGTERM as "cancel": forward them to the child
	// and wait for it, so the session ends only after it is gone.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case werr := <-done:
			return childExit(werr)
		}
	}
}

// childExit turns a child's wait error into our exit status: its code, or
// 128+signal when a signal killed it.
func childExit(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitCoder{128 + int(ws.Signal())}
		}
		return exitCoder{ee.ExitCode()}
	}
	return err
}
