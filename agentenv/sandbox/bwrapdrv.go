package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// bwrapDriver drives a bwrap process. bwrap reports on --info-fd the pid
// (in our pid namespace) of the sandbox's init; the agent is that init's
// child. Signals go to the agent (the init ignores them); killing the init
// takes the whole pid namespace down.
type bwrapDriver struct {
	cmd  *exec.Cmd
	log  *slog.Logger
	info chan struct{} // closed once init is known or bwrap closed the fd

	mu   sync.Mutex
	pid  int         // the sandbox init's pid, 0 until known
	init *os.Process // a pidfd-backed handle on it
}

func startBwrap(s Spec, plan Plan, o Options) (*exec.Cmd, driver, error) {
	// Preflight checked the same before the session started; the session
	// dir now exists, and a mode may have changed since.
	if err := checkBinds(s); err != nil {
		return nil, nil, err
	}
	if s.MountsEgress() {
		if err := CheckConnectable(s.EgressSocket, s.UID, s.GID, true); err != nil {
			return nil, nil, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: %w", err)
	}
	argv := append([]string{plan.Argv[0], "--info-fd", "3"}, plan.Argv[1:]...)
	cmd := exec.Command(argv[0], argv[1:]...) //nolint:noctx // ends through signals, see supervise
	cmd.Env = append(append([]string(nil), plan.Env...), hostEnv(plan.PassEnv)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.ExtraFiles = []*os.File{w}
	// Its own process group, so a Ctrl-C meant for us does not kill bwrap
	// (and, with it, the agent) before we forward it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dropTo(cmd, plan, s.UID); err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("sandbox: start bwrap: %w", err)
	}
	d := &bwrapDriver{cmd: cmd, log: o.Logger, info: make(chan struct{})}
	go d.readInfo(r)
	return cmd, d, nil
}

func (d *bwrapDriver) readInfo(r io.ReadCloser) {
	defer close(d.info)
	defer r.Close()
	// bwrap writes one JSON object, from outside the sandbox (the agent
	// never holds this fd).
	var info struct {
		ChildPID int `json:"child-pid"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 1<<16)).Decode(&info); err != nil || info.ChildPID <= 0 {
		return // bwrap failed before the sandbox existed; it says why on stderr
	}
	p, err := os.FindProcess(info.ChildPID)
	if err != nil {
		return
	}
	d.mu.Lock()
	d.pid, d.init = info.ChildPID, p
	d.mu.Unlock()
}

func (d *bwrapDriver) sandboxInit() (int, *os.Process) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid, d.init
}

func (d *bwrapDriver) forward(sig syscall.Signal) bool {
	pid, _ := d.sandboxInit()
	if pid == 0 {
		select {
		case <-d.info:
			// bwrap never reported a sandbox: signal bwrap itself.
			_ = d.cmd.Process.Signal(sig)
			return true
		default:
			return false
		}
	}
	kids := children(pid)
	if len(kids) == 0 {
		// Not started yet, or already gone: bwrap's default action for
		// the signal ends it, and --die-with-parent the sandbox.
		_ = d.cmd.Process.Signal(sig)
		return true
	}
	for _, k := range kids {
		if err := syscall.Kill(k, sig); err != nil {
			d.log.Debug("sandbox: signal agent", "pid", k, "error", err.Error())
		}
	}
	return true
}

func (d *bwrapDriver) kill() {
	if _, p := d.sandboxInit(); p != nil {
		_ = p.Signal(syscall.SIGKILL)
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
}

// cleanup makes sure the sandbox init, and so its pid namespace, is gone:
// bwrap exits when the agent does, but a bwrap that was killed leaves the
// init to --die-with-parent, which acts asynchronously.
func (d *bwrapDriver) cleanup() error {
	select {
	case <-d.info:
	case <-time.After(5 * time.Second):
	}
	_, p := d.sandboxInit()
	if p == nil {
		return nil
	}
	defer func() { _ = p.Release() }()
	_ = p.Signal(syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A dead init is a zombie until whoever inherited it reaps it (some
		// inits take seconds); by then the kernel has killed everything
		// else in its pid namespace.
		if err := p.Signal(syscall.Signal(0)); errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH) || dead(d.pid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox: bubblewrap sandbox (init pid %d) still running after it was killed", d.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dead reports whether pid has exited: no /proc entry, or a zombie.
func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:])
	return i < 0 || len(f) == 0 || f[0][0] == 'Z' || f[0][0] == 'X'
}

// children lists the pids whose parent is pid, from /proc.
func children(pid int) []int {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		var out []int
		for _, f := range bytes.Fields(b) {
			if n, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	ents, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) > 1 && string(f[1]) == strconv.Itoa(pid) {
			if n, err := strconv.Atoi(filepath.Base(filepath.Dir(e))); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
