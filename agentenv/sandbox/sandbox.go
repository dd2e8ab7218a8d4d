// Package sandbox builds and runs the sandboxes that hold an agent session:
// Docker, Podman, docker compose and bubblewrap. Whatever the engine, the
// sandbox sees only these host paths: the project dir (read-write, at
// ProjectMount), the session dir (read-only, the directory itself so that
// atomic renames show through, at SessionMount), a static credbroker
// binary (read-only, at BinaryMount), which is the entrypoint:
// `credbroker exec --dir /run/credbroker -- CMD`, and, when the session's
// role has egress, the session's egress gateway socket (at
// agentenv.SandboxEgressSocket). It runs as a non-root uid, with
// no-new-privileges, no capabilities, a read-only root and, by default, no
// network interface but loopback: the gateway socket is its only way out.
//
// The argument lists are pure functions of a Spec (Spec.Plan,
// ComposeService), golden-tested; Run starts a Plan, forwards signals and
// returns only once the sandbox is gone.
package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Fixed paths inside every sandbox.
const (
	// SessionMount is where the session dir is mounted read-only; it is
	// also the exec wrapper's default --dir.
	SessionMount = "/run/credbroker"
	// BinaryMount is where the static credbroker binary is mounted.
	BinaryMount = "/credbroker"
	// ProjectMount is where the project dir is mounted read-write, and the
	// working directory when there is a project.
	ProjectMount = "/workspace"
	// Home is $HOME inside: the sandbox's own tmpfs, never the host's home.
	Home = "/tmp"
	// SessionLabel labels containers with their session id, so that
	// `docker ps --filter label=io.credbroker.session` finds them.
	SessionLabel = "io.credbroker.session"
	// DefaultImage is the image `scripts/build-sandbox-image.sh` builds.
	DefaultImage = "credbroker-sandbox:dev"
)

// Engine names a sandbox engine.
type Engine string

// The engines.
const (
	Docker  Engine = "docker"
	Podman  Engine = "podman"
	Compose Engine = "compose"
	Bwrap   Engine = "bwrap"
)

// Engines lists every engine, for help texts.
var Engines = []Engine{Docker, Podman, Compose, Bwrap}

// ErrInvalid is wrapped by every Spec validation error.
var ErrInvalid = errors.New("invalid sandbox spec")

// Spec is what a sandbox is made of. Paths are host paths.
type Spec struct {
	Engine Engine
	// SessionDir is the session dir on the host (absolute).
	SessionDir string
	// SessionID labels the container; optional.
	SessionID string
	// Project is the project dir on the host (absolute); "" mounts none.
	Project string
	// Image is the container image (docker, podman, compose).
	Image string
	// Network is "none" (also ""), "host", or a network name (container
	// engines only). Anything but none gives the sandbox a direct route
	// out, around the egress gateway.
	Network string
	// EgressSocket is the session's egress gateway socket on the host
	// (absolute), mounted at agentenv.SandboxEgressSocket; "" when the
	// session's role has no egress. It is not mounted into a sandbox on the
	// host's network (see MountsEgress).
	EgressSocket string
	// UID and GID run the sandboxed command; UID 0 is refused. UID must
	// own the session dir, or it cannot read its 0400 files.
	UID, GID int
	// Binary is the static credbroker binary on the host (absolute).
	Binary string
	// Name names the container (docker, podman) or the compose service.
	Name string
	// KeepEnv names host variables passed into the sandbox and on to the
	// agent (the wrapper's --keep-env). Their values never appear in Argv.
	KeepEnv []string
	// TTY allocates a terminal (container engines).
	TTY bool
	// Rootless says the caller is not root. Rootless Podman then gets
	// --userns=keep-id, so the session dir's owner is the same uid inside;
	// a root caller's bwrap command line drops to UID first (setpriv), as
	// Run does.
	Rootless bool
	// Argv is the agent command.
	Argv []string
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	imageRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]*$`)
)

// Validate checks the spec; errors wrap ErrInvalid and name the field.
func (s Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("sandbox: %w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch s.Engine {
	case Docker, Podman, Compose:
		if !imageRE.MatchString(s.Image) {
			return bad("image %q: give a local image name such as %s", s.Image, DefaultImage)
		}
	case Bwrap:
		if s.Network != "" && s.Network != "none" && s.Network != "host" {
			return bad("network %q: bubblewrap can only share the host's network (host) or have none", s.Network)
		}
	default:
		return bad("engine %q: use one of %s", s.Engine, engineList())
	}
	if s.UID <= 0 {
		return bad("uid %d: the sandbox never runs as root; use the session's non-root uid", s.UID)
	}
	if s.GID < 0 {
		return bad("gid %d", s.GID)
	}
	paths := []struct{ what, p string }{{"session dir", s.SessionDir}, {"credbroker binary", s.Binary}, {"project dir", s.Project}, {"egress socket", s.EgressSocket}}
	for _, p := range paths {
		if p.p == "" && (p.what == "project dir" || p.what == "egress socket") {
			continue
		}
		if err := checkHostPath(s.Engine, p.p); err != nil {
			return bad("%s: %v", p.what, err)
		}
	}
	if s.Network != "" && s.Network != "none" && s.Network != "host" && !nameRE.MatchString(s.Network) {
		return bad("network %q: use none, host or a network name", s.Network)
	}
	if !nameRE.MatchString(s.Name) {
		return bad("name %q: want [A-Za-z0-9][A-Za-z0-9_.-]*", s.Name)
	}
	for _, k := range s.KeepEnv {
		if !envNameRE.MatchString(k) {
			return bad("keep-env %q: want a variable name", k)
		}
	}
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return bad("no command to run")
	}
	return nil
}

// checkHostPath refuses relative paths, and characters a container
// engine's --mount syntax would misread.
func checkHostPath(e Engine, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	if e != Bwrap && strings.ContainsAny(p, ",\"\n") {
		return fmt.Errorf("%q contains a comma, quote or newline, which %s's --mount cannot take", p, e)
	}
	return nil
}

func engineList() string {
	var ss []string
	for _, e := range Engines {
		ss = append(ss, string(e))
	}
	return strings.Join(ss, ", ")
}

// MountsEgress reports whether the sandbox gets the egress socket: only
// when its loopback is its own. On the host's network the forwarder that
// `credbroker exec` starts would listen on the host's loopback, where any
// local user could send traffic through this session's gateway, in its
// name; such a sandbox reaches the network directly anyway.
func (s Spec) MountsEgress() bool {
	return s.EgressSocket != "" && s.network() != "host"
}

// network is the spec's network with the default filled in.
func (s Spec) network() string {
	if s.Network == "" {
		return "none"
	}
	return s.Network
}

// execArgv is the command run inside: the wrapper, then the agent.
func (s Spec) execArgv() []string {
	a := []string{BinaryMount, "exec", "--dir", SessionMount}
	if len(s.KeepEnv) > 0 {
		a = append(a, "--keep-env", strings.Join(s.KeepEnv, ","))
	}
	return append(append(a, "--"), s.Argv...)
}

// workdir is where the agent starts.
func (s Spec) workdir() string {
	if s.Project != "" {
		return ProjectMount
	}
	return Home
}

// Plan is how to start a sandbox: the engine's command line and its
// environment.
type Plan struct {
	// Argv is the engine command line; Argv[0] is the program.
	Argv []string
	// Env, when InheritEnv is false, is the engine process's whole
	// environment (no secrets), to which Run adds PassEnv with their host
	// values. When InheritEnv is true the engine gets the caller's
	// environment (a container client needs DOCKER_HOST and the like; the
	// container itself gets only what Argv names).
	Env        []string
	PassEnv    []string
	InheritEnv bool
	// SetUID, when not -1, is the uid (with SetGID and no supplementary
	// groups) the engine process must run as.
	SetUID, SetGID int
}

// Plan validates s and returns the command line that starts it. Compose
// has no command line of its own: see ComposeService.
func (s Spec) Plan() (Plan, error) {
	if err := s.Validate(); err != nil {
		return Plan{}, err
	}
	switch s.Engine {
	case Docker, Podman:
		return Plan{Argv: containerArgs(s), InheritEnv: true, SetUID: -1, SetGID: -1}, nil
	case Bwrap:
		return bwrapPlan(s), nil
	default:
		return Plan{}, fmt.Errorf("sandbox: %w: %s has no command line; use ComposeService", ErrInvalid, s.Engine)
	}
}

// Shell renders the plan as one POSIX shell command line; variables passed
// from the host appear as NAME="$NAME", never with their values.
func (p Plan) Shell() string {
	var parts []string
	if p.SetUID >= 0 {
		parts = append(parts, "setpriv", "--reuid="+strconv.Itoa(p.SetUID), "--regid="+strconv.Itoa(p.SetGID), "--clear-groups")
	}
	if !p.InheritEnv {
		parts = append(parts, "env", "-i")
		for _, kv := range p.Env {
			parts = append(parts, shellQuote(kv))
		}
		for _, k := range p.PassEnv {
			parts = append(parts, k+`="$`+k+`"`)
		}
	}
	for _, a := range p.Argv {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes a word for sh; safe words stay bare.
func shellQuote(v string) string {
	if v == "" {
		return "''"
	}
	for i := 0; i < len(v); i++ {
		if !safeBare(v[i]) {
			return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
		}
	}
	return v
}

// safeBare is the set of bytes sh takes literally, unquoted.
func safeBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("_@%+=:,./-", c) >= 0
}
