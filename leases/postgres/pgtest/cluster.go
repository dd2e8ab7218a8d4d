package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// superuser is the bootstrap role initdb creates.
	superuser = "postgres"
	// serverUser is who runs the server when the tests run as root:
	// PostgreSQL refuses to run as root, and Debian's package creates it.
	serverUser = "postgres"
	// readyTimeout bounds start-up on a loaded 2-core machine.
	readyTimeout = 60 * time.Second
	// startAttempts covers losing the free port to another process between
	// choosing it and the server binding it.
	startAttempts = 3
)

// BinDirEnv is the environment variable that, when set, names the directory
// holding initdb and postgres, for machines where they are not in
// /usr/lib/postgresql/<version>/bin.
const BinDirEnv = "CREDBROKER_PG_BINDIR"

// DurableEnv is the environment variable that, set to 1, starts clusters
// with PostgreSQL's default durability (every commit fsynced, data on disk
// rather than tmpfs), for benchmarks that should measure what production
// would pay. Tests leave it unset: their data dies with the run, so they
// trade durability for speed.
const DurableEnv = "CREDBROKER_PGTEST_DURABLE"

const installHint = "run make testbins (it installs Debian's postgresql)"

// cluster is one running PostgreSQL server and the directory it lives in.
type cluster struct {
	dir           string // data, socket, log; removed by stop
	port          int
	superPassword string
	rolePassword  string
	admin         *pgxpool.Pool // superuser, database postgres
	createOpts    string        // appended to CREATE DATABASE
	durable       bool          // fsync on: see DurableEnv
	opts          Options
	bin           string              // holds postgres
	cred          *syscall.Credential // whom the server runs as

	proc    *exec.Cmd
	exited  chan struct{} // closed once proc has been waited for
	logFile *os.File
}

// start initialises a cluster in a new temporary directory and starts it.
func start(opts Options) (c *cluster, err error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parents are 0700 and owned by the test's user,
	// which the server's user (when we are root) could not enter.
	durable := os.Getenv(DurableEnv) == "1"
	dir, err := makeDir(durable)
	if err != nil {
		return nil, err
	}
	c = &cluster{dir: dir, superPassword: randomHex(), rolePassword: randomHex(), durable: durable,
		opts: opts, bin: bin, cred: cred}
	defer func() {
		if err != nil {
			_ = c.stop()
			c = nil
		}
	}()
	if err := c.chown(dir, cred); err != nil {
		return c, err
	}
	if err := c.initdb(bin, cred); err != nil {
		return c, err
	}
	if err := c.allowNetworks(); err != nil {
		return c, err
	}
	for attempt := 1; ; attempt++ {
		err = c.startServer(0)
		if err == nil || attempt == startAttempts || !errors.Is(err, errExitedEarly) {
			break
		}
	}
	if err != nil {
		return c, err
	}
	ctx := context.Background()
	if c.admin, err = pgxpool.New(ctx, c.superDSN("postgres")); err != nil {
		return c, fmt.Errorf("connect as %s: %w", superuser, err)
	}
	var version int
	if err := c.admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return c, err
	}
	// FILE_COPY (PostgreSQL 15+) copies the template's files instead of
	// writing them through the WAL: several times faster for a database
	// per test.
	if version >= 150000 {
		c.createOpts = " STRATEGY file_copy"
	}
	return c, createRole(ctx, c.admin, c.rolePassword)
}

// makeDir creates the cluster's directory: in /dev/shm when there is one,
// as a throwaway cluster has no reason to touch the disk (which other jobs
// on a shared machine keep busy), else (and for a durable cluster) in the
// temporary directory.
func makeDir(durable bool) (string, error) {
	if !durable {
		removeStale("/dev/shm")
		if dir, err := os.MkdirTemp("/dev/shm", dirPattern); err == nil {
			return dir, nil
		}
	}
	removeStale(os.TempDir())
	return os.MkdirTemp("", dirPattern)
}

// dirPattern names cluster directories.
const dirPattern = "credbroker-pgtest-"

// findBinDir returns the directory holding initdb and postgres: $BinDirEnv,
// else the newest /usr/lib/postgresql/<version>/bin (Debian keeps them out of
// $PATH), else the directory of initdb in $PATH.
func findBinDir() (string, error) {
	if d := os.Getenv(BinDirEnv); d != "" {
		if !hasServer(d) {
			return "", fmt.Errorf("$%s=%s holds no initdb and postgres; unset it and %s", BinDirEnv, d, installHint)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasServer(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL's initdb and postgres are not in /usr/lib/postgresql/*/bin, $PATH or $%s; %s",
		BinDirEnv, installHint)
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// serverCredential returns whom to run the server as: nil (ourselves) unless
// we are root, which PostgreSQL refuses; then the postgres system user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to: no %q user to run it as (%v); %s",
			serverUser, err, installHint)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", serverUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *cluster) chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

// command runs name from bin as the server's user, in c.dir, with a plain
// environment (no PG* variables of the caller's).
func (c *cluster) command(bin string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// initdb creates the cluster with only password (SCRAM) authentication, for
// local and TCP connections alike.
func (c *cluster) initdb(bin string, cred *syscall.Credential) error {
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.superPassword+"\n"), 0o600); err != nil {
		return err
	}
	if err := c.chown(pwfile, cred); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	cmd := c.command(bin, cred, "initdb", "-D", filepath.Join(c.dir, "data"),
		"--username="+superuser, "--pwfile="+pwfile, "--auth=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// allowNetworks lets the test role log in with its password from
// c.opts.Allow, besides the loopback initdb allows.
func (c *cluster) allowNetworks() error {
	if len(c.opts.Allow) == 0 {
		return nil
	}
	var b strings.Builder
	for _, cidr := range c.opts.Allow {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return fmt.Errorf("pgtest: Allow: %w", err)
		}
		fmt.Fprintf(&b, "host all %s %s scram-sha-256\n", TestRole, cidr)
	}
	f, err := os.OpenFile(filepath.Join(c.dir, "data", "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var errExitedEarly = errors.New("postgres exited during start-up")

// startServer runs postgres on port (0: a free one) on 127.0.0.1 and
// c.opts.Listen (and a socket in c.dir), and waits until the superuser can
// log in. Unless c.durable, durability is traded for speed: the data dies
// with the test run.
func (c *cluster) startServer(port int) error {
	bin, cred := c.bin, c.cred
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return err
		}
	}
	if c.logFile != nil { // an earlier attempt's
		_ = c.logFile.Close()
	}
	logf, err := os.Create(filepath.Join(c.dir, "postgres.log"))
	if err != nil {
		return err
	}
	args := []string{"-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(port), "-k", c.dir,
		"-c", "listen_addresses=" + strings.Join(append([]string{"127.0.0.1"}, c.opts.Listen...), ","),
		"-c", "shared_buffers=32MB", "-c", "max_connections=200"}
	if !c.durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := c.command(bin, cred, "postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Run postgres itself rather than through pg_ctl, which detaches it:
	// as our child it gets SIGQUIT (immediate shutdown) if the test binary
	// dies without running Main's cleanup, so no server outlives a killed
	// or timed-out test run.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc, c.port, c.logFile = cmd, port, logf
	c.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		err := ping(ctx, c.superDSN("postgres"))
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			c.proc = nil
			return fmt.Errorf("%w (port %d):\n%s", errExitedEarly, port, c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready after %v: %v\n%s", readyTimeout, err, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down (fast mode: SIGINT) and removes its directory.
func (c *cluster) stop() error {
	if c.admin != nil {
		c.admin.Close()
	}
	err := c.halt()
	if c.logFile != nil {
		_ = c.logFile.Close()
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// halt shuts the server down in fast mode (SIGINT: sessions are ended at
// once, as when a database goes away) and keeps its data.
func (c *cluster) halt() error {
	if c.proc == nil {
		return nil
	}
	_ = c.proc.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.proc.Process.Kill()
		<-c.exited
		err = fmt.Errorf("postgres did not stop within 30s; killed:\n%s", c.logTail())
	}
	c.proc = nil
	return err
}

// superDSN is the superuser's URL for database db.
func (c *cluster) superDSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, c.superPassword),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// logTail is the end of the server's log, for failure messages.
func (c *cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ping tries one connection with dsn.
func ping(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}
