package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// Fleet tests run brokers as Docker containers: each its own host (its own
// hostname, address and tmpfs), on a private network, sharing one real
// PostgreSQL and one real Vault that run on the test's host and listen on
// the network's gateway address. The image is FROM scratch: the static
// credbroker binary and Debian's static busybox (for docker exec checks).

// fleetMount is where a broker's host dir is mounted in its container:
// config, DSN file, runtime dir (session dirs, socket) and state dir.
const fleetMount = "/fleet"

// fleetWorld is one fleet test's network, database, Vault and brokers.
type fleetWorld struct {
	t       testing.TB
	id      string // unique per test: names the network and containers
	image   string
	network string
	gateway string // the network's gateway: the host, as containers see it
	subnet  string
	dir     string // host dir holding each broker's mounted dir
	pg      *pgtest.Cluster
	db      pgtest.DB
	vault   *vaulttest.Server
	refresh string // broker.refresh_interval of the brokers

	mu      sync.Mutex
	brokers map[string]*fleetBroker
	secrets []string // session tokens: never to appear in logs
}

// fleetBroker is one broker container.
type fleetBroker struct {
	w         *fleetWorld
	name      string // the short name and hostname (host id)
	container string
	dir       string // host side of /fleet
}

// newFleetWorld creates the network, starts PostgreSQL and Vault on its
// gateway, and creates an empty database. Everything is removed when the
// test ends.
func newFleetWorld(t testing.TB) *fleetWorld {
	t.Helper()
	fleetRequireDocker(t)
	w := &fleetWorld{t: t, id: "cbfleet-" + strings.ToLower(rand.Text()[:8]), image: fleetImage(t), brokers: map[string]*fleetBroker{}, refresh: "1s"}
	w.network = w.id
	fleetMustDocker(t, "network", "create", "--label", "io.credbroker.test=fleet", w.network)
	t.Cleanup(func() {
		if _, err := fleetDocker("network", "rm", w.network); err != nil {
			t.Errorf("remove network: %v", err)
		}
	})
	ipam := fleetMustDocker(t, "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}} {{(index .IPAM.Config 0).Subnet}}", w.network)
	if f := strings.Fields(ipam); len(f) == 2 {
		w.gateway, w.subnet = f[0], f[1]
	} else {
		t.Fatalf("network %s: gateway and subnet: %q", w.network, ipam)
	}
	dir, err := os.MkdirTemp("/dev/shm", w.id+"-")
	if err != nil {
		t.Fatal(err)
	}
	w.dir = dir
	t.Cleanup(func() {
		_ = exec.Command("chmod", "-R", "u+w", dir).Run()
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	w.pg = pgtest.Start(t, pgtest.Options{Listen: []string{w.gateway}, Allow: []string{w.subnet}})
	w.db = w.pg.NewDB(t).At(w.gateway)
	w.vault = vaulttest.StartOn(t, w.gateway)
	vaulttest.Seed(t, w.vault)
	t.Cleanup(w.checkNoLeaks)
	return w
}

// fleetConfig is a broker's config: its state under /fleet, PostgreSQL and
// Vault at the gateway. broker.host_id is not set: it defaults to the
// container's hostname.
func (w *fleetWorld) fleetConfig() string {
	return fmt.Sprintf(`broker:
  runtime_dir: %[1]s/run
  state_dir: %[1]s/state
  refresh_interval: %[5]s
store:
  driver: postgres
  dsn_file: %[1]s/dsn
providers:
  vault:
    address: %[2]s
    auth:
      token_env: %[3]s
    token_role: %[4]s
    epoch_ttl: 24h
roles:
  agent-readonly:
    ttl: 15m
    max_ttl: 1h
    vault:
      policies: [agent-readonly]
      secrets:
        - name: config
          path: secret/data/agent/readonly/config
`, fleetMount, w.vault.Addr, brokerTokenEnv, vaulttest.TokenRole, w.refresh)
}

// create creates (without starting) the broker container name.
func (w *fleetWorld) create(name string) *fleetBroker {
	t := w.t
	t.Helper()
	b := &fleetBroker{w: w, name: name, container: w.id + "-" + name, dir: filepath.Join(w.dir, name)}
	for _, d := range []string{b.dir, filepath.Join(b.dir, "run"), filepath.Join(b.dir, "state")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for file, content := range map[string]string{"config.yaml": w.fleetConfig(), "dsn": w.db.DSN() + "\n"} {
		if err := os.WriteFile(filepath.Join(b.dir, file), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fleetMustDocker(t, "create", "--name", b.container, "--hostname", name, "--network", w.network,
		"--label", "io.credbroker.test=fleet",
		"--volume", b.dir+":"+fleetMount,
		"--env", "CREDBROKER_CONFIG="+fleetMount+"/config.yaml",
		"--env", brokerTokenEnv+"="+vaulttest.RootToken,
		w.image, "serve", "--log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := fleetDocker("logs", "--tail", "60", b.container)
			t.Logf("last log lines of %s:\n%s", name, logs)
		}
		if _, err := fleetDocker("rm", "--force", "--volumes", b.container); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	w.mu.Lock()
	w.brokers[name] = b
	w.mu.Unlock()
	return b
}

// startBrokers creates and starts the named brokers and waits until each
// serves.
func (w *fleetWorld) startBrokers(names ...string) []*fleetBroker {
	w.t.Helper()
	var bs []*fleetBroker
	for _, n := range names {
		b := w.create(n)
		fleetMustDocker(w.t, "start", b.container)
		bs = append(bs, b)
	}
	for _, b := range bs {
		b.waitServing(30 * time.Second)
	}
	return bs
}

// client talks to the broker's daemon through its socket, which the
// bind mount makes reachable from the host (no docker exec round trip).
func (b *fleetBroker) client() *broker.Client {
	return broker.NewClient(filepath.Join(b.dir, "run", "broker.sock"))
}

// waitServing waits until the daemon answers and returns how long it took.
func (b *fleetBroker) waitServing(limit time.Duration) time.Duration {
	t := b.w.t
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.client().Status(ctx)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			logs, _ := fleetDocker("logs", "--tail", "40", b.container)
			t.Fatalf("broker %s not serving after %s: %v\n%s", b.name, limit, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exec runs credbroker ARGS in the container (docker exec) and returns its
// exit status, stdout and stderr.
func (b *fleetBroker) exec(args ...string) (int, string, string) {
	b.w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", b.container, "credbroker"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		b.w.t.Fatalf("docker exec %s credbroker %v: %v", b.name, args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// mustExec is exec that fails the test unless the status is 0.
func (b *fleetBroker) mustExec(args ...string) string {
	b.w.t.Helper()
	code, out, errOut := b.exec(args...)
	if code != 0 {
		b.w.t.Fatalf("on %s: credbroker %s exited %d\nstdout:\n%s\nstderr:\n%s", b.name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fleetSession is a session started on a broker container.
type fleetSession struct {
	b     *fleetBroker
	info  broker.SessionInfo
	token string
}

// startSession runs `credbroker session start` in the container and reads
// the session's Vault token.
func (b *fleetBroker) startSession() fleetSession {
	t := b.w.t
	t.Helper()
	out := b.mustExec("session", "start", "--role", "agent-readonly", "-o", "json")
	var si broker.SessionInfo
	if err := json.Unmarshal([]byte(out), &si); err != nil {
		t.Fatalf("decode session start on %s: %v\n%s", b.name, err, out)
	}
	if si.Host != b.name {
		t.Errorf("session %s started on %s belongs to host %q", si.ID, b.name, si.Host)
	}
	tok, err := os.ReadFile(filepath.Join(b.hostPath(si.Dir), "vault", "token"))
	if err != nil {
		t.Fatalf("read the token of %s: %v", si.ID, err)
	}
	b.w.mu.Lock()
	b.w.secrets = append(b.w.secrets, string(tok))
	b.w.mu.Unlock()
	return fleetSession{b: b, info: si, token: string(tok)}
}

// hostPath maps a path in the container's /fleet to the host.
func (b *fleetBroker) hostPath(p string) string {
	return filepath.Join(b.dir, strings.TrimPrefix(p, fleetMount))
}

// dirGone reports whether the session's dir is gone, as the host sees it
// (the same tmpfs the container uses).
func (s fleetSession) dirGone() bool {
	_, err := os.Stat(s.b.hostPath(s.info.Dir))
	return errors.Is(err, os.ErrNotExist)
}

// dirGoneInContainer checks the same from inside the container.
func (s fleetSession) dirGoneInContainer() bool {
	_, err := fleetDocker("exec", s.b.container, "test", "-e", s.info.Dir)
	return err != nil
}

// tokenValid asks Vault whether the session's token still authenticates.
func (s fleetSession) tokenValid() bool {
	c, err := s.b.w.vault.Client.Clone()
	if err != nil {
		s.b.w.t.Fatal(err)
	}
	c.SetToken(s.token)
	_, err = c.Auth().Token().LookupSelf()
	if err != nil && vaultStatus(err) != 403 {
		s.b.w.t.Fatalf("lookup-self: %v", err)
	}
	return err == nil
}

// checkNoLeaks fails the test if a session token shows up in a broker's
// log or state dir (audit log, guard files).
func (w *fleetWorld) checkNoLeaks() {
	w.mu.Lock()
	secrets := append([]string(nil), w.secrets...)
	brokers := make([]*fleetBroker, 0, len(w.brokers))
	for _, b := range w.brokers {
		brokers = append(brokers, b)
	}
	w.mu.Unlock()
	for _, b := range brokers {
		hay := map[string][]byte{}
		if logs, err := exec.Command("docker", "logs", b.container).CombinedOutput(); err == nil {
			hay["docker logs "+b.name] = logs
		}
		_ = filepath.WalkDir(filepath.Join(b.dir, "state"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if c, err := os.ReadFile(p); err == nil {
					hay[p] = c
				}
			}
			return nil
		})
		for where, c := range hay {
			for i, s := range secrets {
				if bytes.Contains(c, []byte(s)) {
					w.t.Errorf("LEAK: session token #%d appears in %s", i, where)
				}
			}
		}
	}
}

// auditEvents counts the events of kind in a broker's audit log.
func (b *fleetBroker) auditEvents(kind string) int {
	c, err := os.ReadFile(filepath.Join(b.dir, "state", "audit.log"))
	if err != nil {
		b.w.t.Fatal(err)
	}
	return strings.Count(string(c), `"event":"`+kind+`"`)
}
