package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/agentenv/sandbox"
)

// sandboxOpts are the flags `run` and `sandbox args` share.
type sandboxOpts struct {
	engine     string
	image      string
	project    string
	noProject  bool
	network    string
	keep       []string
	execBinary string
}

func (o *sandboxOpts) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.image, "image", sandbox.DefaultImage, "container image (local only: never pulled)")
	f.StringVar(&o.project, "project", "", "project dir mounted read-write at "+sandbox.ProjectMount+" (default: the current dir)")
	f.BoolVar(&o.noProject, "no-project", false, "mount no project dir")
	f.StringVar(&o.network, "network", "none", "network: none, host, or a container network name")
	f.StringSliceVar(&o.keep, "keep-env", nil, "host variables to pass into the sandbox and on to the agent: NAME or PREFIX* (expanded from this environment)")
	f.StringVar(&o.execBinary, "exec-binary", "", "static credbroker binary to mount as the entrypoint (default: this one)")
}

// spec builds a sandbox spec from the flags; the session fields are the
// caller's to fill. Warnings about --keep-env variables go to warn.
func (o *sandboxOpts) spec(warn io.Writer, engine string, uid int, argv []string) (sandbox.Spec, error) {
	keep, err := keepNames(warn, o.keep, os.Environ())
	if err != nil {
		return sandbox.Spec{}, err
	}
	s := sandbox.Spec{Engine: sandbox.Engine(engine), Network: o.network, UID: uid, GID: primaryGID(uid), KeepEnv: keep, Argv: argv, Rootless: os.Geteuid() != 0}
	if s.Engine != sandbox.Bwrap {
		s.Image = o.image
	}
	if !o.noProject {
		p, err := projectDir(o.project)
		if err != nil {
			return s, err
		}
		s.Project = p
	}
	bin := o.execBinary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return s, fmt.Errorf("find the credbroker binary to mount: %w (pass --exec-binary)", err)
		}
		bin = exe
	}
	bin, err = filepath.Abs(bin)
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return s, usagef("--exec-binary: %v", err)
	}
	s.Binary = bin
	return s, nil
}

// keepNames turns --keep-env entries into the host variable names passed
// into a sandbox: a PREFIX* entry becomes every set name with that prefix
// (sorted), a plain name stays (unset, it passes nothing). A variable whose
// value holds a URL with credentials, or whose name is not a plain name, is
// left out with a warning: once inside the sandbox its value would be
// readable by the agent (in the environment of the sandbox's init) even if
// the wrapper refused to pass it on.
func keepNames(warn io.Writer, entries, environ []string) ([]string, error) {
	if err := checkKeep(entries); err != nil {
		return nil, err
	}
	host := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			host[k] = v
		}
	}
	var out []string
	add := func(name string) {
		if slices.Contains(out, name) {
			return
		}
		if v, ok := host[name]; ok {
			if why := agentenv.Unpassable(name, v); why != "" {
				fmt.Fprintf(warn, "credbroker: warning: not passing %q into the sandbox: %s\n", name, why)
				return
			}
		}
		out = append(out, name)
	}
	for _, e := range entries {
		p, ok := strings.CutSuffix(e, "*")
		if !ok {
			add(e)
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(host)) {
			if strings.HasPrefix(k, p) {
				add(k)
			}
		}
	}
	return out, nil
}

// projectDir resolves the project dir and refuses one that would expose
// the host's home.
func projectDir(p string) (string, error) {
	if p == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		p = wd
	}
	abs, err := filepath.Abs(p)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", usagef("--project %s: %v", p, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return "", usagef("--project %s: not a directory", p)
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		if h, err := filepath.EvalSymlinks(home); err == nil {
			home = h
		}
	}
	if err := sandbox.CheckProject(abs, home); err != nil {
		return "", usageError{err}
	}
	return abs, nil
}

// primaryGID is uid's primary group from the user database, or the same
// number when uid has no entry.
func primaryGID(uid int) int {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if g, err := strconv.Atoi(u.Gid); err == nil {
			return g
		}
	}
	return uid
}

// commandAfterDash returns the arguments after --, refusing any before it.
func commandAfterDash(cmd *cobra.Command, args []string, example string) ([]string, error) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 || dash == len(args) {
		return nil, usagef("give the command after --: %s", example)
	}
	if dash > 0 {
		return nil, usagef("unexpected arguments %q before --", args[:dash])
	}
	return args[dash:], nil
}

func newSandboxCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Sandbox helpers: print the arguments that start a sandbox for a session",
	}
	cmd.AddCommand(newSandboxArgsCmd(g))
	return cmd
}

type sandboxArgsOpts struct {
	sandboxOpts
	sessionDir string
	egress     string
	name       string
	uid        int
	tty        bool
	output     string
}

func newSandboxArgsCmd(g *globalOpts) *cobra.Command {
	o := &sandboxArgsOpts{}
	cmd := &cobra.Command{
		Use:   "args --engine docker|podman|compose|bwrap --session-dir DIR [--project DIR] [--image IMG] -- CMD ARGS...",
		Short: "Print the command line (or compose service) that runs CMD in a sandbox with a session dir",
		Long: `Print, without running anything, the exact command that starts a sandbox
for an existing session dir, with the same restrictions as 'credbroker run':
for docker, podman and bwrap one shell command line, for compose a compose
file with one service. Nothing ends the session when such a sandbox exits:
end it yourself with 'credbroker session end ID'.

The sandbox's uid is --uid, by default the owner of the session dir (the
session's --uid); a root-owned session dir is refused, since the sandbox
never runs as root. With --output json the argv and environment are printed
as JSON.

When the session's role has egress rules, pass its gateway socket with
--egress-socket (the egress_socket of 'credbroker session start -o json'):
it is mounted into the sandbox, whose only network is then loopback and
that socket. With --network host or NAME the egress rules are not enforced
(a warning on stderr says so).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			argv, err := commandAfterDash(cmd, args, "credbroker sandbox args --engine docker --session-dir DIR -- CMD ARGS")
			if err != nil {
				return err
			}
			if o.sessionDir == "" {
				return usagef("--session-dir is required (the dir 'credbroker session start' printed)")
			}
			if err := checkOutput(o.output); err != nil {
				return err
			}
			return runSandboxArgs(g, o, cmd.Flags().Changed("uid"), argv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.engine, "engine", string(sandbox.Docker), "docker, podman, compose or bwrap")
	f.StringVar(&o.sessionDir, "session-dir", "", "the session dir on the host (required)")
	f.StringVar(&o.egress, "egress-socket", "", "the session's egress gateway socket on the host (when its role has egress)")
	f.StringVar(&o.name, "name", "", "container name (default credbroker-<session id>) or compose service name (default agent)")
	f.IntVar(&o.uid, "uid", 0, "uid to run as (default: the session dir's owner)")
	f.BoolVar(&o.tty, "tty", false, "allocate a terminal (docker, podman)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	o.addFlags(f)
	return cmd
}

func runSandboxArgs(g *globalOpts, o *sandboxArgsOpts, uidSet bool, argv []string) error {
	dir, err := filepath.Abs(o.sessionDir)
	if err != nil {
		return usagef("--session-dir: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return usagef("--session-dir %s: not a directory (%v)", dir, err)
	}
	uid := o.uid
	if !uidSet {
		uid = int(st.Uid)
		if uid == 0 {
			return usagef("session dir %s is owned by root, and a sandbox never runs as root: start the session with --uid UID (a non-root uid) and pass --uid UID here", dir)
		}
	}
	s, err := o.spec(g.errOut, o.engine, uid, argv)
	if err != nil {
		return err
	}
	s.SessionDir, s.TTY = dir, o.tty
	if o.egress != "" {
		if s.EgressSocket, err = egressSocketPath(o.egress); err != nil {
			return err
		}
	}
	if id := filepath.Base(dir); agentenv.ValidID(id) == nil {
		s.SessionID = id
	}
	s.Name = o.name
	if s.Name == "" {
		s.Name = "credbroker-agent"
		if s.SessionID != "" {
			s.Name = "credbroker-" + s.SessionID
		}
		if s.Engine == sandbox.Compose {
			s.Name = "agent"
		}
	}
	if s.Engine != sandbox.Bwrap {
		if err := sandbox.CheckStatic(s.Binary); err != nil {
			return err
		}
	}
	if s.Engine == sandbox.Compose {
		warnEgress(g, s, "")
		y, err := sandbox.ComposeService(s)
		if err != nil {
			return usageError{err}
		}
		if o.output == "json" {
			return printJSON(g.out, map[string]string{"compose": string(y)})
		}
		_, err = g.out.Write(y)
		return err
	}
	warnEgress(g, s, "")
	p, err := s.Plan()
	if err != nil {
		return usageError{err}
	}
	if o.output == "json" {
		return printJSON(g.out, map[string]any{"argv": p.Argv, "env": p.Env, "pass_env": p.PassEnv, "inherit_env": p.InheritEnv})
	}
	fmt.Fprintln(g.out, p.Shell())
	return nil
}

// egressSocketPath resolves --egress-socket and refuses anything but a
// Unix socket: a wrong path would otherwise show only as a sandbox with no
// way out.
func egressSocketPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("--egress-socket: %v", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", usagef("--egress-socket %s: %v (give the egress_socket of 'credbroker session start -o json')", p, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return "", usagef("--egress-socket %s: not a Unix socket (give the egress_socket of 'credbroker session start -o json')", p)
	}
	return abs, nil
}
