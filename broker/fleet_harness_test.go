package broker_test

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/tcpproxy"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// fleet is several brokers in one process, each as if on its own host: its
// own host id, session root, Vault provider (so its own epoch) and
// connection to one shared PostgreSQL database, through a proxy the test
// can cut to take that broker off the network. They share one real Vault.
type fleet struct {
	t     *testing.T
	srv   *vaulttest.Server
	pg    *pgtest.Cluster
	db    pgtest.DB
	nodes map[string]*node
	h     *harness // for Vault helpers (token checks)
	// wrap, when set, wraps each node's Vault provider.
	wrap func(providers.Provider) providers.Provider
	// vaultCfg, when set, edits each new node's Vault provider config (a
	// host whose config differs from the others').
	vaultCfg func(host string, v *configs.VaultProvider)
}

// node is one broker of the fleet.
type node struct {
	host   string
	b      *broker.Broker
	st     *postgres.Store
	w      *agentenv.Writer
	vp     *vault.Provider
	proxy  *tcpproxy.Proxy // between the broker and PostgreSQL
	audit  string
	logs   *syncbuf.Buffer
	offset atomic.Int64 // added to the broker's clock
	stop   func()       // ends WatchIncidents, if running
}

func newFleet(t *testing.T, hosts ...string) *fleet {
	t.Helper()
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	pg := pgtest.Start(t, pgtest.Options{})
	f := &fleet{t: t, srv: srv, pg: pg, db: pg.NewDB(t), nodes: map[string]*node{}}
	f.h = &harness{t: t, srv: srv, logs: &syncbuf.Buffer{}, caller: broker.Caller{UID: os.Geteuid(), PID: os.Getpid()}}
	t.Setenv("CB_TEST_BROKER_TOKEN", vaulttest.RootToken)
	for _, h := range hosts {
		f.nodes[h] = f.newNode(h)
	}
	return f
}

// newNode is a broker of the fleet reaching PostgreSQL through its own
// proxy (n.proxy), so a test can cut it off.
func (f *fleet) newNode(host string) *node {
	t := f.t
	t.Helper()
	proxy := tcpproxy.Start(t, f.db.Host+":"+strconv.Itoa(f.db.Port))
	h, p, _ := strings.Cut(proxy.Addr, ":")
	db := f.db.At(h)
	db.Port, _ = strconv.Atoi(p)
	n := f.newNodeAt(host, db.DSN())
	n.proxy = proxy
	return n
}

// newNodeAt is a broker of the fleet whose store is at dsn.
func (f *fleet) newNodeAt(host, dsn string) *node {
	t := f.t
	t.Helper()
	root, err := os.MkdirTemp("/dev/shm", "cb-fleet-"+host+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chmodTree(root); os.RemoveAll(root) })
	n := &node{host: host, logs: &syncbuf.Buffer{}, audit: filepath.Join(t.TempDir(), "audit.log")}
	ctx := context.Background()
	if n.st, err = postgres.Open(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.st.Close() })
	log := slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", host)
	vcfg := configs.VaultProvider{
		Address: f.srv.Addr, Auth: configs.VaultAuth{TokenEnv: "CB_TEST_BROKER_TOKEN"},
		TokenRole: vaulttest.TokenRole, EpochTTL: configs.Duration(24 * time.Hour),
	}
	if f.vaultCfg != nil {
		f.vaultCfg(host, &vcfg)
	}
	if n.vp, err = vault.New(ctx, vcfg, broker.NewJournal(n.st, nil, log), log, vault.WithHostID(host)); err != nil {
		t.Fatal(err)
	}
	reg := providers.NewRegistry()
	if f.wrap != nil {
		reg.Register(f.wrap(n.vp))
	} else {
		reg.Register(n.vp)
	}
	audit, err := broker.OpenAudit(n.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	n.w = &agentenv.Writer{Root: filepath.Join(root, "sessions"), Logger: log}
	cfg := &configs.Config{Path: "fleet-test.yaml", Roles: maps.Clone(testRoles), Providers: configs.Providers{Vault: &vcfg},
		Store: configs.Store{Driver: "postgres"}, Broker: configs.Broker{HostID: host}}
	n.b = broker.New(broker.Options{
		Config: cfg, Store: n.st, Providers: reg, Env: n.w, Audit: audit, Logger: log, HostID: host,
		Now: func() time.Time { return time.Now().Add(time.Duration(n.offset.Load())) },
	})
	n.stop = func() {}
	return n
}

// watch runs the node's incident watch until the test ends or n.stop.
func (n *node) watch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.b.WatchIncidents(ctx) }()
	n.stop = func() { cancel(); <-done }
	t.Cleanup(n.stop)
}

// start starts a session of role agent-readonly on n and returns it with
// its Vault token.
func (f *fleet) start(n *node) (broker.SessionInfo, string) {
	f.t.Helper()
	si, err := n.b.StartSession(context.Background(), f.h.caller, broker.StartRequest{Role: "agent-readonly"})
	if err != nil {
		f.t.Fatalf("start on %s: %v", n.host, err)
	}
	if si.Host != n.host {
		f.t.Errorf("session %s belongs to %q, want %q", si.ID, si.Host, n.host)
	}
	return si, f.h.token(si)
}

// dirGone reports whether a session dir no longer exists.
func dirGone(dir string) bool {
	_, err := os.Stat(dir)
	return os.IsNotExist(err)
}

// waitFor polls cond every 10ms for up to limit and reports how long it
// took; it fails the test on timeout.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// state reads a session's state straight from the shared store.
func (f *fleet) state(n *node, id string) leases.SessionState {
	f.t.Helper()
	s, err := n.st.GetSession(context.Background(), id)
	if err != nil {
		f.t.Fatalf("get session %s: %v", id, err)
	}
	return s.State
}

// auditHas reports whether n's audit log holds an event of kind.
func (n *node) auditHas(t *testing.T, event string) bool {
	t.Helper()
	b, err := os.ReadFile(n.audit)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), `"event":"`+event+`"`)
}
