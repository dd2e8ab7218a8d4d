package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// ReadyFD is the descriptor on which a forwarder child reports its
// addresses (the first of exec.Cmd.ExtraFiles).
const ReadyFD = 3

// ReadyTimeout bounds the wait for a forwarder child to listen.
const ReadyTimeout = 10 * time.Second

// parentPoll is how often a child checks that its parent is still there,
// behind PR_SET_PDEATHSIG.
const parentPoll = 200 * time.Millisecond

// Ready is the one JSON line a forwarder child writes on ReadyFD once
// both ports listen.
type Ready struct {
	HTTP  string `json:"http"`
	SOCKS string `json:"socks"`
}

// StartChild starts `exe args...` (the hidden forwarder subcommand, which
// must call RunChild) and waits until it reports on ReadyFD that it
// listens. The child gets SIGKILL when the thread that started it ends:
// the caller must hold runtime.LockOSThread from before this call until
// its own execve, so that thread is the one that execs and lives on as the
// agent (a Go program's other threads die at execve, which would fire the
// signal at once). The child also watches its parent pid (see RunChild)
// and sits in its own process group, so a Ctrl-C meant for the agent does
// not end it.
func StartChild(exe string, args []string, stderr io.Writer) (Ready, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return Ready{}, fmt.Errorf("forward: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, args...) //nolint:noctx // lives as long as the agent, see above
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return Ready{}, fmt.Errorf("forward: start the egress forwarder: %w", err)
	}
	rd, err := readReady(r)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return Ready{}, fmt.Errorf("forward: egress forwarder: %w", err)
	}
	// Not waited for: after our execve the agent is its parent, and it
	// is killed when the agent ends.
	_ = cmd.Process.Release()
	return rd, nil
}

func readReady(r *os.File) (Ready, error) {
	_ = r.SetReadDeadline(time.Now().Add(ReadyTimeout))
	var rd Ready
	err := json.NewDecoder(io.LimitReader(r, 4096)).Decode(&rd)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return rd, fmt.Errorf("not listening after %s", ReadyTimeout)
	case errors.Is(err, io.EOF):
		return rd, errors.New("exited before listening (its error is above)")
	case err != nil:
		return rd, fmt.Errorf("bad readiness report: %w", err)
	case rd.HTTP == "" || rd.SOCKS == "":
		return rd, errors.New("readiness report without addresses")
	}
	return rd, nil
}

// RunChild is the forwarder child's body: listen, report the addresses on
// ready (then close it), and relay until the parent process is gone or
// SIGTERM arrives. Terminal signals are ignored: they are the agent's.
func RunChild(ctx context.Context, cfg Config, ready io.WriteCloser) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	ctx = watchParent(ctx, os.Getppid())
	f, err := Listen(cfg)
	if err != nil {
		ready.Close()
		return err
	}
	b, _ := json.Marshal(Ready{HTTP: f.HTTPAddr(), SOCKS: f.SOCKSAddr()})
	_, err = ready.Write(append(b, '\n'))
	ready.Close()
	if err != nil {
		f.Close()
		return fmt.Errorf("forward: report readiness: %w", err)
	}
	return f.Serve(ctx)
}

// watchParent returns a context cancelled once this process's parent is
// no longer ppid (it died and we were re-parented): the fallback for when
// PR_SET_PDEATHSIG could not fire, e.g. a parent that was not the thread
// that forked us.
func watchParent(ctx context.Context, ppid int) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(parentPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != ppid {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}
