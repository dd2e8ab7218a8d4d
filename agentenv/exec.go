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

// BuildEnv returns base (in os.Environ form) without the variables strip
// matches (see DefaultStrip; nil means DefaultStrip, an empty non-nil slice
// strips nothing) and without any variable the session sets, followed by
// the session's variables sorted by name and CREDBROKER_SESSION_DIR. A
// session value starting with SessionDirRef has it replaced by loaded.Dir.
// A strip entry "!NAME" (or "!GLOB") exempts the names it matches, so
// append(DefaultStrip, "!ANTHROPIC_API_KEY") passes that one through.
// Session variables are never stripped.
func BuildEnv(base []string, loaded *Loaded, strip []string) []string {
	if strip == nil {
		strip = DefaultStrip
	}
	m := newMatcher(strip)
	sess := map[string]string{}
	if loaded != nil {
		for k, v := range loaded.Env {
			if rest, ok := strings.CutPrefix(v, SessionDirRef); ok {
				v = loaded.Dir + rest
			}
			sess[k] = v
		}
		sess[EnvSessionDir] = loaded.Dir
	}
	out := make([]string, 0, len(base)+len(sess))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if _, set := sess[name]; set || m.match(name) {
			continue
		}
		out = append(out, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(sess)) {
		out = append(out, k+"="+sess[k])
	}
	return out
}
