package sandbox

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrEngine is wrapped by Preflight when the engine cannot run a sandbox.
var ErrEngine = errors.New("sandbox engine unavailable")

// Preflight checks, before any credential is minted, that s can start:
// the engine is installed and answers, the image is local, the binary can
// run in an image without a libc, bwrap can create user namespaces as the
// sandbox's uid, and that uid can reach every path bwrap binds. The session
// dir need not exist yet, since Preflight runs before the session starts:
// give the path it will have (any name in the dir it will be created in)
// and Preflight checks that the uid can reach that dir; "" skips the
// check. Preflight does not validate s (Plan does).
func Preflight(ctx context.Context, s Spec) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	prog := string(s.Engine)
	if _, err := exec.LookPath(prog); err != nil {
		return fmt.Errorf("sandbox: %w: %s is not installed (%v)", ErrEngine, prog, err)
	}
	switch s.Engine {
	case Docker, Podman:
		if err := CheckStatic(s.Binary); err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, prog, "image", "inspect", "--format", "{{.Id}}", s.Image).CombinedOutput()
		if err != nil {
			return fmt.Errorf("sandbox: %w: %s image %s: %s (build one with scripts/build-sandbox-image.sh, or docker pull it first: credbroker never pulls)",
				ErrEngine, prog, s.Image, firstLine(out, err))
		}
	case Bwrap:
		cmd := exec.CommandContext(ctx, "bwrap", "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true")
		if err := dropTo(cmd, bwrapPlan(s), s.UID); err != nil {
			return err
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("sandbox: %w: bubblewrap cannot create a sandbox as uid %d here (unprivileged user namespaces disabled?): %s",
				ErrEngine, s.UID, firstLine(out, err))
		}
		return checkBinds(s)
	}
	return nil
}

// checkBinds checks that s.UID can reach every bind source of a bwrap
// sandbox; the session dir's own dir when the session dir does not exist
// yet.
func checkBinds(s Spec) error {
	for _, p := range []string{s.Binary, s.Project} {
		if p == "" {
			continue
		}
		if err := CheckReachable(p, s.UID, s.GID); err != nil {
			return err
		}
	}
	if s.SessionDir == "" {
		return nil
	}
	if _, err := os.Lstat(s.SessionDir); err == nil {
		return CheckReachable(s.SessionDir, s.UID, s.GID)
	}
	// The daemon creates missing dirs on the way 0711 (sessions/ before
	// its first session): the nearest existing one decides.
	d := filepath.Dir(s.SessionDir)
	for d != filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		d = filepath.Dir(d)
	}
	return CheckSearchable(d, s.UID, s.GID)
}

func firstLine(out []byte, err error) string {
	if l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); l != "" {
		return l
	}
	return err.Error()
}

// dropTo makes cmd run as the plan's SetUID. A caller that is not root
// can only run bwrap as itself (bwrap is not setuid and cannot switch
// users), so uid must be its own.
func dropTo(cmd *exec.Cmd, p Plan, uid int) error {
	if euid := os.Geteuid(); p.SetUID < 0 && uid != euid {
		return fmt.Errorf("sandbox: %w: bubblewrap runs as the caller, uid %d, but the session is for uid %d: start it with your own uid", ErrEngine, euid, uid)
	}
	if p.SetUID < 0 || p.SetUID == os.Geteuid() {
		return nil
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(p.SetUID), Gid: uint32(p.SetGID), Groups: []uint32{}}
	return nil
}

// CheckStatic refuses a binary that needs a dynamic loader: it is mounted
// into images that may have no libc (FROM scratch). Build it with
// CGO_ENABLED=0.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("sandbox: credbroker binary %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("sandbox: credbroker binary %s is dynamically linked and would not start in an image without its libc: build it with CGO_ENABLED=0 (make build does) or pass --exec-binary", path)
		}
	}
	return nil
}

// CheckReachable reports whether uid:gid (without supplementary groups,
// as the sandbox runs) may search every dir above path and read path
// itself. bwrap opens its bind sources as that uid, so a 0700 dir on the
// way (the default broker.runtime_dir of a root daemon) stops it.
func CheckReachable(path string, uid, gid int) error {
	if err := searchable(filepath.Dir(path), uid, gid); err != nil {
		return fmt.Errorf("sandbox: %w: uid %d cannot reach %s: %v; every dir above it needs search permission for that uid (for a root daemon: chmod 0711 broker.runtime_dir)", ErrEngine, uid, path, err)
	}
	if err := permits(path, uid, gid, 4); err != nil {
		return fmt.Errorf("sandbox: %w: uid %d cannot read %s: %v", ErrEngine, uid, path, err)
	}
	return nil
}

// CheckSearchable reports whether uid:gid (without supplementary groups)
// may search dir and every dir above it: what it takes to reach a session
// dir the daemon has yet to create in dir.
func CheckSearchable(dir string, uid, gid int) error {
	if err := searchable(dir, uid, gid); err != nil {
		return fmt.Errorf("sandbox: %w: uid %d cannot reach %s, where its session dir would be: %v; dir and every dir above it need search permission for that uid (for a root daemon: chmod 0711 broker.runtime_dir)", ErrEngine, uid, dir, err)
	}
	return nil
}

// searchable checks the search bit for uid:gid on dir and its ancestors,
// from the root down.
func searchable(dir string, uid, gid int) error {
	dirs := []string{}
	for d := dir; ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := permits(dirs[i], uid, gid, 1); err != nil {
			return err
		}
	}
	return nil
}

// permits checks the mode bits of p for uid:gid (bit 1 search, 4 read).
func permits(p string, uid, gid int, bit uint32) error {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return err
	}
	mode := st.Mode & 0o777
	var have uint32
	switch {
	case uid == 0:
		return nil
	case int(st.Uid) == uid:
		have = mode >> 6
	case int(st.Gid) == gid:
		have = mode >> 3
	default:
		have = mode
	}
	if have&bit == 0 {
		return fmt.Errorf("%s is mode %#o, owned by %d:%d", p, mode, st.Uid, st.Gid)
	}
	return nil
}

// CheckProject refuses a project dir that would expose the host's
// credentials: the root, or the home dir or any dir above it (~/.aws,
// ~/.ssh, ~/.kube would be inside).
func CheckProject(dir, home string) error {
	if dir == "/" {
		return fmt.Errorf("sandbox: %w: project dir / would mount the whole host into the sandbox", ErrInvalid)
	}
	if home == "" {
		return nil
	}
	home = filepath.Clean(home)
	if rel, err := filepath.Rel(dir, home); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("sandbox: %w: project dir %s contains the home dir %s (and with it ~/.aws, ~/.ssh, ~/.kube): give the project's own dir with --project", ErrInvalid, dir, home)
	}
	return nil
}

// hostEnv returns NAME=VALUE for each name set in the caller's environment.
func hostEnv(names []string) []string {
	var out []string
	for _, k := range names {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}
