package agentenv

import (
	"fmt"
	"regexp"
	"strings"
)

// BaseEnv is the allow-list of host variables the exec wrapper (and
// `session start -- CMD`) passes to the agent without being asked: what a
// command-line program needs to find its programs, its home, its user name,
// draw on the terminal and speak the user's language. Everything else of
// the host stays out unless named with --keep-env (EnvOptions.Keep). An
// entry ending in "*" matches every name with that prefix.
//
// Decisions (docs/session-dir.md#the-environment):
//   - No credential, no authority: no *_TOKEN, *_KEY, *_SECRET, no
//     AWS_*/VAULT_*/KUBECONFIG (the session sets its own), no DOCKER_HOST.
//   - No socket or IPC address: SSH_AUTH_SOCK, GPG_AGENT_INFO,
//     DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR (the user's sockets live
//     there), DISPLAY/WAYLAND_DISPLAY, TMUX/STY, editor IPC
//     (VSCODE_IPC_HOOK_CLI, NVIM, KITTY_LISTEN_ON...): each lets a process
//     act as the user outside the sandbox.
//   - No configuration redirect: GIT_CONFIG_*, XDG_CONFIG_HOME, npm_config_*
//     and the like can carry credentials or point at files that do.
//   - No proxies: HTTP(S)_PROXY may carry a password and route the agent's
//     traffic; pass them with --keep-env when wanted (the egress gateway
//     sets its own).
var BaseEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "TMPDIR",
	"TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "COLUMNS", "LINES",
	"LANG", "LANGUAGE", "LC_*", "TZ",
}

var (
	// envNameRE is a plain variable name: what a shell can export. Names
	// with "/", ":", "." or "-" (npm's //registry/:_authToken) never pass.
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	keepRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\*?$`)
	// urlUserRE finds a URL with userinfo anywhere in a value: a scheme,
	// "://", then user[:password] up to "@" before any "/", "?", "#" or
	// space.
	urlUserRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@\s]+)@`)
)

// CheckKeep refuses a --keep-env entry that is not a variable name or a
// name prefix ending in "*" (so "*" alone, which would keep everything, is
// refused too).
func CheckKeep(entry string) error {
	if !keepRE.MatchString(entry) {
		return fmt.Errorf("--keep-env %q: want a variable name (ANTHROPIC_API_KEY) or a name prefix ending in * (OTEL_*)", entry)
	}
	return nil
}

// URLCredentials reports whether v holds a URL with credentials in it:
// scheme://user:password@, or scheme://token@ for any scheme but ssh (where
// user@ names an account, as in ssh://git@host). Only the reason is
// returned, never the value.
func URLCredentials(v string) bool {
	for _, m := range urlUserRE.FindAllStringSubmatch(v, -1) {
		scheme, user := strings.ToLower(m[1]), m[2]
		if strings.Contains(user, ":") || (scheme != "ssh" && scheme != "git+ssh" && scheme != "ssh+git") {
			return true
		}
	}
	return false
}

// allowList matches names against exact entries and "PREFIX*" entries.
type allowList struct {
	exact    map[string]bool
	prefixes []string
}

func newAllowList(lists ...[]string) allowList {
	a := allowList{exact: map[string]bool{}}
	for _, l := range lists {
		for _, e := range l {
			if p, ok := strings.CutSuffix(e, "*"); ok {
				a.prefixes = append(a.prefixes, p)
			} else {
				a.exact[e] = true
			}
		}
	}
	return a
}

func (a allowList) match(name string) bool {
	if a.exact[name] {
		return true
	}
	for _, p := range a.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
