package egress

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/credbroker/credbroker/configs"
)

// maxSocketPath is the longest path a Unix socket may have (sun_path).
const maxSocketPath = 107

// sessionID is the form of the broker's session ids, checked before one
// becomes part of a path.
var sessionID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Dir holds the sockets, <runtime_dir>/egress; created 0711.
	Dir    string
	Config *configs.Config
	// Resolver defaults to one with the config's broker.egress.hosts.
	Resolver *Resolver
	Dial     DialFunc
	Report   func(Record)
	Logger   *slog.Logger
	// HeaderTimeout is passed to each gateway (default 10s).
	HeaderTimeout time.Duration
}

// Manager opens and closes the gateways of the daemon's sessions.
type Manager struct {
	cfg ManagerConfig
	mu  sync.Mutex
	gws map[string]*Gateway
}

// NewManager returns a Manager with no gateway open.
func NewManager(c ManagerConfig) *Manager {
	if c.Resolver == nil {
		c.Resolver = &Resolver{Hosts: c.Config.EgressHosts()}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &Manager{cfg: c, gws: map[string]*Gateway{}}
}

// SocketPath is where session id's socket is (whether or not it is open).
func (m *Manager) SocketPath(id string) string { return filepath.Join(m.cfg.Dir, id+".sock") }

// Open serves session id's gateway, if its role has an egress block, on a
// socket only uid (and root) may use. It returns the socket's path, or ""
// when the role has no egress. Opening an open session's gateway again
// returns its path.
func (m *Manager) Open(id, role string, uid int) (string, error) {
	return m.OpenWith(m.cfg.Config, id, role, uid, nil)
}

// OpenWith is Open with role's policy taken from cfg rather than the
// Manager's config: the daemon passes the config the session was started
// under, which a reload (SIGHUP) may since have replaced. ic, when not
// nil, intercepts the session's connections (proxy delivery).
func (m *Manager) OpenWith(cfg *configs.Config, id, role string, uid int, ic Interceptor) (string, error) {
	if !sessionID.MatchString(id) {
		return "", fmt.Errorf("egress: invalid session id %q", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.gws[id]; ok {
		return g.Path(), nil
	}
	p, err := NewPolicy(cfg, role, m.cfg.Resolver)
	if err != nil || p == nil {
		return "", err
	}
	path := m.SocketPath(id)
	if len(path)+4 > maxSocketPath {
		return "", fmt.Errorf("egress: socket path %s is longer than the %d bytes a Unix socket allows; use a shorter broker.runtime_dir", path, maxSocketPath)
	}
	if err := m.ensureDir(); err != nil {
		return "", err
	}
	g, err := Listen(path, Config{Session: id, Role: role, UID: uid, Policy: p, Dial: m.cfg.Dial,
		Report: m.cfg.Report, Logger: m.cfg.Logger, HeaderTimeout: m.cfg.HeaderTimeout, Intercept: ic})
	if err != nil {
		return "", err
	}
	m.gws[id] = g
	return path, nil
}

// ensureDir creates the socket dir 0711 (others may reach a socket by
// its path, not list them) and refuses one that is not the daemon's.
func (m *Manager) ensureDir() error {
	if err := os.MkdirAll(m.cfg.Dir, 0o711); err != nil {
		return fmt.Errorf("egress: create %s: %w", m.cfg.Dir, err)
	}
	st, err := os.Lstat(m.cfg.Dir)
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	if !st.IsDir() || !ownedByMe(st) {
		return fmt.Errorf("egress: %s must be a directory owned by uid %d", m.cfg.Dir, os.Geteuid())
	}
	if st.Mode().Perm() != 0o711 {
		if err := os.Chmod(m.cfg.Dir, 0o711); err != nil {
			return fmt.Errorf("egress: chmod %s: %w", m.cfg.Dir, err)
		}
	}
	return nil
}

// Close closes session id's gateway and every connection through it. It
// does nothing when none is open.
func (m *Manager) Close(id string) {
	m.mu.Lock()
	g, ok := m.gws[id]
	delete(m.gws, id)
	m.mu.Unlock()
	if ok {
		if err := g.Close(); err != nil {
			m.cfg.Logger.Warn("egress: close gateway", "session", id, "err", err)
		}
	}
}

// CloseAll closes every gateway at once (daemon shutdown).
func (m *Manager) CloseAll() {
	m.mu.Lock()
	gws := m.gws
	m.gws = map[string]*Gateway{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range gws {
		wg.Go(func() { _ = g.Close() })
	}
	wg.Wait()
}

// Stats returns session id's connection counts; false when it has no
// gateway open.
func (m *Manager) Stats(id string) (Stats, bool) {
	m.mu.Lock()
	g, ok := m.gws[id]
	m.mu.Unlock()
	if !ok {
		return Stats{}, false
	}
	return g.Stats(), true
}

// Path returns session id's socket path, "" when it has no gateway open.
func (m *Manager) Path(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.gws[id]; ok {
		return g.Path()
	}
	return ""
}
