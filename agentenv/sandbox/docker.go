package sandbox

import (
	"strconv"

	"github.com/credbroker/credbroker/agentenv"
)

// tmpfsOpts is the sandbox's /tmp (and $HOME): writable, executable (agents
// build and run test binaries there), no setuid, no devices.
const tmpfsOpts = "rw,exec,nosuid,nodev"

// containerArgs is `docker run` (or `podman run`) for s.
//
// Why each flag:
//   - --rm, --name, --label: the container is removed when it exits, and
//     Run can address it by name to forward signals and remove it.
//   - --init: a tiny init is PID 1, so SIGTERM reaches the agent (a shell
//     as PID 1 ignores it) and zombies are reaped.
//   - (Run adds --sig-proxy=false: it forwards signals itself with
//     `docker kill`, once, in TTY and non-TTY mode alike. The printed
//     command keeps docker's own proxying, which is what a shell running
//     it needs.)
//   - --pull=never: only a local image is ever run; nothing is fetched.
//   - --user, --read-only, --cap-drop ALL, no-new-privileges, --network
//     none: a non-root agent that cannot gain privileges, change the image
//     or reach the network unless asked.
//   - --env HOME=/tmp, and KeepEnv as bare names: the container gets no
//     host variable but those (docker reads their values from its own
//     environment, so they never appear in the command line).
//   - three bind mounts and nothing else: project rw, session dir ro (the
//     directory, so atomic renames show through), the static binary ro;
//     and the session's egress gateway socket ro when it has one, the
//     container's only way out under --network none.
func containerArgs(s Spec) []string {
	a := []string{string(s.Engine), "run", "--rm", "--init", "--interactive"}
	if s.TTY {
		a = append(a, "--tty")
	}
	a = append(a, "--pull=never", "--name", s.Name)
	if s.SessionID != "" {
		a = append(a, "--label", SessionLabel+"="+s.SessionID)
	}
	a = append(a, "--user", strconv.Itoa(s.UID)+":"+strconv.Itoa(s.GID))
	if s.Engine == Podman && s.Rootless {
		a = append(a, "--userns=keep-id")
	}
	a = append(a,
		"--read-only",
		"--cap-drop", "ALL",
		"--security-opt", "no-new-privileges",
		"--network", s.network(),
		"--tmpfs", "/tmp:"+tmpfsOpts,
		"--env", "HOME="+Home,
	)
	for _, k := range s.KeepEnv {
		a = append(a, "--env", k)
	}
	if s.Project != "" {
		a = append(a, "--mount", "type=bind,src="+s.Project+",dst="+ProjectMount)
	}
	a = append(a,
		"--mount", "type=bind,src="+s.SessionDir+",dst="+SessionMount+",readonly",
		"--mount", "type=bind,src="+s.Binary+",dst="+BinaryMount+",readonly",
	)
	if s.MountsEgress() {
		a = append(a, "--mount", "type=bind,src="+s.EgressSocket+",dst="+agentenv.SandboxEgressSocket+",readonly")
	}
	a = append(a,
		"--workdir", s.workdir(),
		"--entrypoint", BinaryMount,
		s.Image,
	)
	return append(a, s.execArgv()[1:]...)
}
