package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
)

func TestStartReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "none"},
		{fmt.Errorf("%w %q: known roles are a, b", ErrUnknownRole, "x"), "unknown_role"},
		{fmt.Errorf("%w: uid 5 may not", ErrForbidden), "forbidden"},
		{fmt.Errorf("%w: --ttl 5h is above", ErrBadRequest), "bad_request"},
		{fmt.Errorf("%w: declared", ErrIncident), "incident"},
		{fmt.Errorf("%w: cannot record", ErrStoreUnavailable), "store_unavailable"},
		{fmt.Errorf("%w: disk full", ErrAuditUnavailable), "audit_unavailable"},
		{fmt.Errorf("%w: vault: permission denied", ErrProvider), "provider"},
		{errors.New("something else"), "other"},
	}
	for _, tt := range tests {
		if got := startReason(tt.err); got != tt.want {
			t.Errorf("startReason(%v) = %q, want %q", tt.err, got, tt.want)
		}
		if !strings.Contains(strings.Join(StartReasons, " "), tt.want) {
			t.Errorf("%q is not listed in StartReasons", tt.want)
		}
	}
}

// TestAuditWriteFailureReported: a record the audit log cannot write is
// reported to the OnWriteFailure hook, a written one is not.
func TestAuditWriteFailureReported(t *testing.T) {
	a, err := OpenAudit(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int32
	a.OnWriteFailure(func() { failed.Add(1) })
	if err := a.Record(Event{Event: EvDaemonStart}); err != nil || failed.Load() != 0 {
		t.Fatalf("a written record: err %v, %d failures reported", err, failed.Load())
	}
	a.f.Close() // the file is gone from under the log, as on a failed disk
	if err := a.Record(Event{Event: EvDaemonStop}); err == nil || failed.Load() != 1 {
		t.Fatalf("a failed record: err %v, %d failures reported, want 1", err, failed.Load())
	}
}

// textExporter serves a fixed text; it observes nothing.
type textExporter struct{ nopMetrics }

func (textExporter) Handler(StateReader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "metrics here\n") })
}

// TestMetricsSocket: the Unix socket is created 0660 and serves GET
// /metrics; a live one is not taken over, a stale one is replaced, a
// regular file is never removed, and stop removes the socket.
func TestMetricsSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	path := filepath.Join(dir, "metrics.sock")
	c := configs.BrokerMetrics{Listen: "unix:" + path}
	log := slog.New(slog.DiscardHandler)
	stop, err := serveMetrics(c, textExporter{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != metricsSocketMode {
		t.Fatalf("socket %s: %v %v, want a socket mode %o", path, fi.Mode(), err, metricsSocketMode)
	}
	if got := getUnix(t, path, "/metrics"); got != "200 metrics here\n" {
		t.Fatalf("GET /metrics = %q", got)
	}
	if got := getUnix(t, path, "/"); !strings.HasPrefix(got, "404") {
		t.Fatalf("GET / = %q, want 404", got)
	}
	if _, err := serveMetrics(c, textExporter{}, nil, log); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("a second listener on a live socket: %v", err)
	}
	stop()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after stop: %v", err)
	}

	// A dead daemon's socket: bound, never closed.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	stop, err = serveMetrics(c, textExporter{}, nil, log)
	if err != nil {
		t.Fatalf("replace a stale socket: %v", err)
	}
	stop()

	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := serveMetrics(c, textExporter{}, nil, log); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file at the socket path: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Fatalf("the regular file was touched: %q %v", b, err)
	}
}

// TestMetricsNeedExporter: broker.metrics.listen in a build without an
// exporter is an error that says what to run, not a silent no-op.
func TestMetricsNeedExporter(t *testing.T) {
	_, err := daemonMetrics(configs.BrokerMetrics{Listen: "127.0.0.1:9464"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "credbroker-daemon") {
		t.Fatalf("daemonMetrics without an exporter: %v", err)
	}
	if m, err := daemonMetrics(configs.BrokerMetrics{}, textExporter{}, nil); m != nil || err != nil {
		t.Fatalf("metrics off: %v %v, want nil, nil", m, err)
	}
}

// getUnix GETs path over the Unix socket sock and returns "CODE body".
func getUnix(t *testing.T, sock, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://metrics" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}
