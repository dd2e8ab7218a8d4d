package sandbox

import (
	"strconv"

	"github.com/credbroker/credbroker/agentenv"
)

// bwrapPath is the sandbox's PATH: the host's system dirs, mounted read-only.
const bwrapPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

// bwrapSystem are host paths bound read-only so the host's programs run
// inside: the system dirs, and from /etc only what programs need to start,
// resolve names and check TLS (not /etc as a whole: it may hold secrets
// readable by others). Missing ones are skipped (--ro-bind-try), so the
// list works on merged-/usr and split layouts alike.
var bwrapSystem = []string{
	"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
	"/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
	"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf",
	"/etc/localtime", "/etc/ssl", "/etc/ca-certificates", "/etc/pki",
}

// bwrapPlan is the bubblewrap command line for s. It runs as the session
// uid (bwrap is not setuid; it needs unprivileged user namespaces), so
// inside the agent has the uid that owns its session dir, and the host
// sees an unprivileged process: a root caller drops to it first.
//
// Why each option:
//   - --unshare-all (user, pid, ipc, uts, cgroup, net: a network
//     namespace with only loopback), --share-net only for network host; --disable-userns so the agent cannot create user
//     namespaces of its own (less kernel attack surface).
//   - --die-with-parent: the sandbox is SIGKILLed when bwrap dies, so
//     killing bwrap (Run does, after a grace period) leaves nothing behind.
//   - --new-session: no controlling terminal, so the agent cannot push
//     input into the caller's terminal (TIOCSTI).
//   - --cap-drop ALL: no capability even inside its namespaces.
//   - a fresh root with the system dirs read-only, /proc, /dev, a tmpfs
//     /tmp (also $HOME), the three bind mounts (four with the egress
//     gateway socket, read-only: connecting needs no write access to the
//     mount), then --remount-ro / so the root is read-only like a
//     container's --read-only.
//   - the environment is set with env -i (Plan.Env): no host variable
//     gets in unless named in KeepEnv.
func bwrapPlan(s Spec) Plan {
	a := []string{"bwrap", "--unshare-all", "--unshare-user"}
	if s.network() == "host" {
		a = append(a, "--share-net")
	}
	a = append(a,
		"--uid", strconv.Itoa(s.UID), "--gid", strconv.Itoa(s.GID),
		"--disable-userns", "--die-with-parent", "--new-session",
		"--cap-drop", "ALL", "--hostname", "credbroker-sandbox",
	)
	for _, p := range bwrapSystem {
		a = append(a, "--ro-bind-try", p, p)
	}
	a = append(a, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/run")
	a = append(a, "--ro-bind", s.SessionDir, SessionMount)
	a = append(a, "--ro-bind", s.Binary, BinaryMount)
	if s.MountsEgress() {
		a = append(a, "--ro-bind", s.EgressSocket, agentenv.SandboxEgressSocket)
	}
	if s.Project != "" {
		a = append(a, "--bind", s.Project, ProjectMount)
	}
	a = append(a, "--remount-ro", "/", "--chdir", s.workdir(), "--")
	a = append(a, s.execArgv()...)
	pass := append([]string(nil), s.KeepEnv...)
	if s.TTY {
		pass = append(pass, "TERM")
	}
	p := Plan{Argv: a, Env: []string{"HOME=" + Home, "PATH=" + bwrapPath}, PassEnv: pass, SetUID: -1, SetGID: -1}
	if !s.Rootless {
		p.SetUID, p.SetGID = s.UID, s.GID
	}
	return p
}
