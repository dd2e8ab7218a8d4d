package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker"
)

// runWithSession runs argv with the session's environment (the allow-listed
// host variables, those named in keep, the session's) and ends the
// session when it exits, whatever the reason. Signals to us (sigs, caught
// since before the session started) go to the child; one that came first
// means the child never starts.
func runWithSession(ctx context.Context, g *globalOpts, c *broker.Client, si broker.SessionInfo, argv, keep []string, sigs <-chan os.Signal) (err error) {
	stop := holdSession(ctx, c, si.ID) // our death ends the session too
	defer stop()
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
	cmd.Env = childEnv(g, loaded, keep)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = g.in, g.out, g.errOut
	// SIGINT/SIGTERM do not cancel anything here: they are forwarded to the
	// child, and the session ends only after it is gone.
	select {
	case s := <-sigs:
		return signalExit(s)
	default:
	}
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

// endInterrupted ends a session whose start was interrupted by s.
func endInterrupted(ctx context.Context, g *globalOpts, c *broker.Client, si broker.SessionInfo, s os.Signal) error {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := c.EndSession(ectx, si.ID, "start interrupted by "+s.String()); err != nil {
		return fmt.Errorf("interrupted; ending session %s: %w", si.ID, err)
	}
	fmt.Fprintf(g.errOut, "credbroker: interrupted; session %s ended, credentials revoked\n", si.ID)
	return signalExit(s)
}

// signalExit is the exit status for a run stopped by s: 128+signal.
func signalExit(s os.Signal) error {
	if n, ok := s.(syscall.Signal); ok {
		return exitCoder{128 + int(n)}
	}
	return exitCoder{exitError}
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
