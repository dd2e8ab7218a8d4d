package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
)

// containerDriver drives `docker run` / `podman run` by container name.
type containerDriver struct {
	ctx  context.Context
	prog string
	name string
	log  *slog.Logger
}

func startContainer(ctx context.Context, s Spec, plan Plan, o Options) (*exec.Cmd, driver, error) {
	if s.MountsEgress() && !s.Rootless {
		// The engine mounts as root; the container's uid connects.
		if err := CheckConnectable(s.EgressSocket, s.UID, s.GID, false); err != nil {
			return nil, nil, err
		}
	}
	// plan.Argv is `ENGINE run ...`: we forward signals ourselves.
	argv := append([]string{plan.Argv[0], plan.Argv[1], "--sig-proxy=false"}, plan.Argv[2:]...)
	cmd := exec.Command(argv[0], argv[1:]...) //nolint:noctx // ends through signals, see supervise
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if !s.TTY {
		// Its own process group: a Ctrl-C meant for us does not also hit
		// the client; we forward it once, with docker kill. With a TTY the
		// client must stay in the terminal's foreground group (the
		// terminal is raw then, so Ctrl-C reaches the container as input).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("sandbox: start %s: %w", plan.Argv[0], err)
	}
	return cmd, &containerDriver{ctx: ctx, prog: plan.Argv[0], name: s.Name, log: o.Logger}, nil
}

// engine runs a short engine command (kill, rm, inspect).
func (d *containerDriver) engine(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.prog, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (d *containerDriver) forward(sig syscall.Signal) bool {
	out, err := d.engine("kill", "--signal", strconv.Itoa(int(sig)), d.name)
	if err != nil {
		d.log.Debug("sandbox: signal not delivered yet", "container", d.name, "error", out)
		return false
	}
	return true
}

func (d *containerDriver) kill() {
	if out, err := d.engine("rm", "--force", d.name); err != nil && !noSuchContainer(out) {
		d.log.Warn("sandbox: remove container", "container", d.name, "error", out)
	}
}

// cleanup removes the container if the client left it (a killed client
// leaves it running) and waits until the engine no longer knows it.
func (d *containerDriver) cleanup() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := d.engine("rm", "--force", d.name)
		if err == nil || noSuchContainer(out) {
			if out, err := d.engine("container", "inspect", "--format", "{{.Id}}", d.name); err != nil && noSuchContainer(out) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox: container %s may still exist: %s (remove it with %s rm -f %s)", d.name, out, d.prog, d.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func noSuchContainer(out string) bool {
	o := strings.ToLower(out)
	return strings.Contains(o, "no such container") || strings.Contains(o, "no such object") || strings.Contains(o, "no container with name")
}

// IsTerminal reports whether both r and w are terminals, so a sandbox
// should get a TTY.
func IsTerminal(r, w any) bool {
	rf, ok1 := r.(*os.File)
	wf, ok2 := w.(*os.File)
	return ok1 && ok2 && term.IsTerminal(int(rf.Fd())) && term.IsTerminal(int(wf.Fd()))
}
