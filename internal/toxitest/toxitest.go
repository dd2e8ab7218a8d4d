// Package toxitest runs a real Toxiproxy server on 127.0.0.1 for tests that
// put faults between the broker and a server: latency, black holes, resets,
// a server down. It drives Toxiproxy's small REST API directly (its Go
// client's module would pull Prometheus, zerolog and more into the module
// graph for six HTTP calls).
package toxitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/testbin"
)

// Version is the Toxiproxy release scripts/build-toxiproxy.sh builds.
const Version = "v2.12.0"

// Binary returns the toxiproxy-server path: $CREDBROKER_TOXIPROXY_BIN or the
// cache that scripts/build-toxiproxy.sh fills.
func Binary() string {
	return testbin.Path("CREDBROKER_TOXIPROXY_BIN", "toxiproxy-server", Version)
}

// Server is a running toxiproxy-server.
type Server struct {
	// URL is the REST API's http://127.0.0.1:<port>.
	URL  string
	cmd  *exec.Cmd
	logs *syncbuf.Buffer
	hc   *http.Client
}

// Start runs toxiproxy-server until the test ends. A missing binary is a
// failure, never a skip: `make testbins` builds it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("toxiproxy-server not found at %s: run `make testbins` (builds Toxiproxy %s from the Go module proxy)", bin, Version)
	}
	var err error
	for range 3 { // a free port may be taken between choosing and binding it
		var s *Server
		if s, err = start(bin); err == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("start toxiproxy-server: %v", err)
	return nil
}

func start(bin string) (*Server, error) {
	port, err := testbin.FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port)) //nolint:noctx // runs until the test ends
	cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, logs: logs, hc: &http.Client{Timeout: 10 * time.Second}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.call(http.MethodGet, "/version", nil, http.StatusOK)
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("toxiproxy-server not ready at %s: %v\n%s", s.URL, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) stop() {
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
}

// Proxy is one Toxiproxy proxy: it listens on Listen and forwards to
// Upstream, through whatever toxics are set.
type Proxy struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  bool   `json:"enabled"`
	s        *Server
}

// Proxy creates a proxy from a free loopback port to upstream (host:port).
func (s *Server) Proxy(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	in := Proxy{Name: name, Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true}
	b, err := s.call(http.MethodPost, "/proxies", in, http.StatusCreated)
	if err != nil {
		t.Fatalf("toxiproxy: create proxy %s to %s: %v", name, upstream, err)
	}
	p := &Proxy{s: s}
	if err := json.Unmarshal(b, p); err != nil {
		t.Fatalf("toxiproxy: create proxy %s: %v", name, err)
	}
	return p
}

// SetEnabled brings the proxy up (it listens again on the same address) or
// takes it down: its listener closes and every open connection is cut, as
// if the server had gone away.
func (p *Proxy) SetEnabled(t testing.TB, on bool) {
	t.Helper()
	if _, err := p.s.call(http.MethodPatch, "/proxies/"+p.Name, map[string]bool{"enabled": on}, http.StatusOK); err != nil {
		t.Fatalf("toxiproxy: set proxy %s enabled=%v: %v", p.Name, on, err)
	}
}

// Toxic is a fault on one direction of a proxy's connections.
type Toxic struct {
	Name string `json:"name"`
	// Type is latency, timeout, reset_peer, bandwidth, slow_close,
	// slicer or limit_data.
	Type string `json:"type"`
	// Stream is "upstream" (client to server) or "downstream" (server to
	// client, the default).
	Stream string `json:"stream,omitempty"`
	// Toxicity is the share of connections affected (1 = all).
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// Latency delays every chunk of data by d.
func Latency(stream string, d time.Duration) Toxic {
	return Toxic{Name: "latency-" + stream, Type: "latency", Stream: stream, Toxicity: 1,
		Attributes: map[string]any{"latency": d.Milliseconds(), "jitter": 0}}
}

// Timeout drops every byte and never closes the connection (a black hole)
// until the toxic is removed.
func Timeout(stream string) Toxic {
	return Toxic{Name: "timeout-" + stream, Type: "timeout", Stream: stream, Toxicity: 1,
		Attributes: map[string]any{"timeout": 0}}
}

// ResetPeer answers the first data of a connection with a TCP reset
// (downstream: the server has acted on the request, and its answer is
// lost).
func ResetPeer(stream string) Toxic {
	return Toxic{Name: "reset-" + stream, Type: "reset_peer", Stream: stream, Toxicity: 1,
		Attributes: map[string]any{"timeout": 0}}
}

// AddToxic sets tx on the proxy; it applies to new data on open
// connections too.
func (p *Proxy) AddToxic(t testing.TB, tx Toxic) {
	t.Helper()
	if _, err := p.s.call(http.MethodPost, "/proxies/"+p.Name+"/toxics", tx, http.StatusOK); err != nil {
		t.Fatalf("toxiproxy: add %s toxic %s to %s: %v", tx.Type, tx.Name, p.Name, err)
	}
}

// RemoveToxic removes the toxic called name (a timeout toxic closes the
// connections it held).
func (p *Proxy) RemoveToxic(t testing.TB, name string) {
	t.Helper()
	if _, err := p.s.call(http.MethodDelete, "/proxies/"+p.Name+"/toxics/"+name, nil, http.StatusNoContent); err != nil {
		t.Fatalf("toxiproxy: remove toxic %s of %s: %v", name, p.Name, err)
	}
}

// call sends one API request and checks the status it answers.
func (s *Server) call(method, path string, body any, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s answered %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
