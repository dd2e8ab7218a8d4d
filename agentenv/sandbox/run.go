package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// DefaultGrace is how long the agent has to exit after a forwarded signal
// before the sandbox is killed.
const DefaultGrace = 10 * time.Second

// Options are a Run's I/O and signals.
type Options struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Signals received by the caller are forwarded to the agent. Grace
	// after the first one, the sandbox is killed outright.
	Signals <-chan os.Signal
	Grace   time.Duration
	Logger  *slog.Logger
}

// driver is what differs between engines once the engine process runs.
type driver interface {
	// forward delivers sig to the agent; false means "not yet possible,
	// try again shortly" (the container does not exist yet).
	forward(sig syscall.Signal) bool
	// kill takes the whole sandbox down now.
	kill()
	// cleanup runs after the engine process exited and returns only once
	// nothing of the sandbox is left, or an error saying what may be.
	cleanup() error
}

// Run starts the sandbox s describes and returns the agent's exit status
// (128+signal when a signal ended it) once the sandbox is gone: the engine
// process has exited and no container or process of it is left, whatever
// the reason it ended. A signal that arrived before the start means the
// sandbox never starts.
func Run(ctx context.Context, s Spec, o Options) (int, error) {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	plan, err := s.Plan()
	if err != nil {
		return 0, err
	}
	select {
	case sig := <-o.Signals:
		return signalStatus(sig), nil
	default:
	}
	ctx = context.WithoutCancel(ctx) // the sandbox ends through signals, not our context
	var (
		cmd *exec.Cmd
		d   driver
	)
	switch s.Engine {
	case Bwrap:
		cmd, d, err = startBwrap(s, plan, o)
	default:
		cmd, d, err = startContainer(ctx, s, plan, o)
	}
	if err != nil {
		return 0, err
	}
	return supervise(cmd, d, o)
}

// supervise waits for the engine process, forwarding signals and
// escalating: signal, then after Grace kill the sandbox, then after
// another Grace kill the engine process itself.
func supervise(cmd *exec.Cmd, d driver, o Options) (int, error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var (
		pending          syscall.Signal
		retry            *time.Ticker
		retryC           <-chan time.Time
		killAt, hardKill <-chan time.Time
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	deliver := func() {
		if pending != 0 && d.forward(pending) {
			pending = 0
		}
	}
	for {
		select {
		case sig := <-o.Signals:
			if n, ok := sig.(syscall.Signal); ok {
				o.Logger.Info("sandbox: forwarding signal to the agent", "signal", n.String())
				pending = n
				deliver()
			}
			if killAt == nil {
				killAt = time.After(o.Grace)
			}
			if pending != 0 && retry == nil {
				retry = time.NewTicker(200 * time.Millisecond)
				retryC = retry.C
			}
		case <-retryC:
			deliver()
		case <-killAt:
			o.Logger.Warn("sandbox: the agent did not exit after the signal; killing the sandbox", "grace", o.Grace.String())
			d.kill()
			hardKill = time.After(o.Grace)
		case <-hardKill:
			o.Logger.Warn("sandbox: the engine process did not exit; killing it")
			_ = cmd.Process.Kill()
		case werr := <-done:
			code, err := exitStatus(werr)
			if cerr := d.cleanup(); cerr != nil {
				return code, cerr
			}
			return code, err
		}
	}
}

// exitStatus turns a wait error into an exit status: the code, or
// 128+signal when a signal killed the process.
func exitStatus(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 1, fmt.Errorf("sandbox: wait: %w", err)
}

func signalStatus(sig os.Signal) int {
	if n, ok := sig.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}
