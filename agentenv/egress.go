package agentenv

import (
	"os"
	"strings"
)

// SandboxEgressSocket is where a sandbox engine mounts the session's egress
// gateway socket. It lies outside SessionMount on purpose: the session dir
// is mounted read-only there, so no engine could create a mount point
// inside it.
const SandboxEgressSocket = "/run/credbroker-egress.sock"

// EnvEgressSocket overrides SandboxEgressSocket for the exec wrapper
// (tests, or a sandbox built by hand that mounts the socket elsewhere).
const EnvEgressSocket = "CREDBROKER_EGRESS_SOCKET"

// EgressSocket returns the gateway socket the exec wrapper should use,
// and whether a socket is there: no socket means the session's role has no
// egress (or the sandbox was not given it), and the agent runs as before.
func EgressSocket() (string, bool) {
	p := SandboxEgressSocket
	if v := os.Getenv(EnvEgressSocket); v != "" {
		p = v
	}
	st, err := os.Stat(p)
	return p, err == nil && st.Mode()&os.ModeSocket != 0
}

// proxyVars are the variables WithProxy owns, in both cases: clients
// disagree on which one they read.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"}

// WithProxy returns env (os.Environ form) with every proxy variable
// replaced: HTTP(S)_PROXY point at the forwarder's HTTP/CONNECT address,
// ALL_PROXY at its SOCKS5 address (socks5h: the gateway resolves names),
// both cases of each, and NO_PROXY removed so that no host is tried
// directly (there is no route out but the forwarder).
func WithProxy(env []string, httpAddr, socksAddr string) []string {
	out := make([]string, 0, len(env)+6)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !isProxyVar(name) {
			out = append(out, kv)
		}
	}
	h, s := "http://"+httpAddr, "socks5h://"+socksAddr
	return append(out,
		"HTTP_PROXY="+h, "HTTPS_PROXY="+h, "ALL_PROXY="+s,
		"http_proxy="+h, "https_proxy="+h, "all_proxy="+s,
	)
}

func isProxyVar(name string) bool {
	for _, v := range proxyVars {
		if name == v {
			return true
		}
	}
	return false
}
