package agentenv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Errors LoadSession wraps, for the wrapper to map to exit codes.
var (
	ErrNoSession = errors.New("no session")
	ErrExpired   = errors.New("session expired")
)

// Loaded is a session as the exec wrapper sees it.
type Loaded struct {
	// Dir is the absolute path at which the session dir was found.
	Dir  string
	Meta Meta
	// Env holds the variables of the env file, unexpanded.
	Env map[string]string
}

// LoadSession reads session.json and env from dir and refuses a session
// that is missing, malformed, expired (expires_at <= now) or revoked. It
// needs no daemon, no config and no network.
func LoadSession(dir string, now time.Time) (*Loaded, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("agentenv: session dir %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("agentenv: session dir %s does not exist (is it mounted into the sandbox?): %w", abs, ErrNoSession)
	}
	if err != nil {
		return nil, fmt.Errorf("agentenv: session dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("agentenv: session dir %s is not a directory: %w", abs, ErrNoSession)
	}
	mb, err := readSmall(abs, MetaFile)
	if err != nil {
		return nil, err
	}
	m, err := ParseMeta(mb)
	if err != nil {
		return nil, fmt.Errorf("agentenv: %s: %w", abs, err)
	}
	if m.Revoked {
		return nil, fmt.Errorf("agentenv: session %s (role %s) has been revoked; start a new session: %w", m.ID, m.Role, ErrRevoked)
	}
	if !now.Before(m.ExpiresAt) {
		return nil, fmt.Errorf("agentenv: session %s (role %s) expired at %s; start a new session: %w",
			m.ID, m.Role, m.ExpiresAt.UTC().Format(time.RFC3339), ErrExpired)
	}
	eb, err := readSmall(abs, EnvFile)
	if err != nil {
		return nil, err
	}
	env, err := ParseEnv(eb)
	if err != nil {
		return nil, fmt.Errorf("agentenv: %s: %w", abs, err)
	}
	return &Loaded{Dir: abs, Meta: m, Env: env}, nil
}

// readSmall reads dir/name, refusing anything but a small regular file.
func readSmall(dir, name string) ([]byte, error) {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDONLY|readFlags, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("agentenv: %s has no %s: not a complete credbroker session dir: %w", dir, name, ErrNoSession)
	}
	if err != nil {
		return nil, fmt.Errorf("agentenv: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("agentenv: %s is not a regular file", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRead+1))
	if err != nil {
		return nil, fmt.Errorf("agentenv: read %s: %w", p, err)
	}
	if len(b) > maxRead {
		return nil, fmt.Errorf("agentenv: %s is larger than %d bytes", p, maxRead)
	}
	return b, nil
}

// Unpassable says why a host variable, although allowed, must not reach
// the agent: its name is not a plain variable name, or its value holds a
// URL with credentials. "" means it may pass. The reason never holds the
// value.
func Unpassable(name, value string) string {
	switch {
	case !envNameRE.MatchString(name):
		return "it is not a plain variable name"
	case URLCredentials(value):
		return "its value holds a URL with credentials (scheme://user:password@); a credential the agent needs comes from the broker, not from the host"
	}
	return ""
}

// EnvOptions say what BuildEnv adds to the base set.
type EnvOptions struct {
	// Keep names host variables passed besides BaseEnv: exact names, or a
	// prefix ending in "*" (see CheckKeep; callers validate).
	Keep []string
	// Extra are variables the wrapper itself sets (the egress gateway's
	// proxy variables): they override the host's and the session's.
	Extra map[string]string
}

// Refused is a host variable BuildEnv kept out although it was allowed,
// with the reason (never the value), for the caller to warn about.
type Refused struct {
	Name, Reason string
}

// BuildEnv returns the agent's environment: the host variables of base (in
// os.Environ form) that BaseEnv or o.Keep allow, then the session's
// variables and CREDBROKER_SESSION_DIR, then o.Extra, each name once, the
// later ones overriding the earlier, sorted by name. Whatever is not named
// does not pass. An allowed host variable is still refused (and listed in
// the second result) when its name is not a plain variable name or its
// value holds a URL with credentials (URLCredentials); there is no
// override: a credential the agent needs comes from the broker, not from
// the host. A session value starting with SessionDirRef has it replaced by
// loaded.Dir; session and extra values are not checked.
func BuildEnv(base []string, loaded *Loaded, o EnvOptions) ([]string, []Refused) {
	allow := newAllowList(BaseEnv, o.Keep)
	vars := map[string]string{}
	var refused []Refused
	for _, kv := range base {
		name, v, ok := strings.Cut(kv, "=")
		if !ok || !allow.match(name) {
			continue
		}
		if why := Unpassable(name, v); why != "" {
			refused = append(refused, Refused{name, why})
			continue
		}
		vars[name] = v
	}
	if loaded != nil {
		for k, v := range loaded.Env {
			if rest, ok := strings.CutPrefix(v, SessionDirRef); ok {
				v = loaded.Dir + rest
			}
			vars[k] = v
		}
		vars[EnvSessionDir] = loaded.Dir
	}
	maps.Copy(vars, o.Extra)
	out := make([]string, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		out = append(out, k+"="+vars[k])
	}
	return out, refused
}
