// Package promtest runs a real Prometheus server (Debian's prometheus
// package, /usr/bin/prometheus) on loopback for tests: it scrapes one
// target every second and answers instant queries through its HTTP API.
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/testbin"
)

// Job is the job label of the scraped target.
const Job = "credbroker"

// Server is a running Prometheus.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL  string
	cmd  *exec.Cmd
	logs *syncbuf.Buffer
	done chan struct{}
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Start runs Prometheus until the test ends, scraping target (host:port)
// at /metrics every second. A missing binary is a test failure, never a
// skip: scripts/install-deps.sh installs it.
func Start(t testing.TB, target string) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found: install Debian's prometheus package (scripts/install-deps.sh, run by `make testbins`, does)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	yml := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"+
		"scrape_configs:\n  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", Job, target)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // a free port may be taken before Prometheus binds it
		s, err := start(bin, cfg, filepath.Join(dir, "data"))
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("start prometheus: %v", lastErr)
	return nil
}

func start(bin, cfg, data string) (*Server, error) {
	port, err := testbin.FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{URL: "http://" + addr, logs: &syncbuf.Buffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+data,
		"--web.listen-address="+addr, "--log.level=warn")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, err := s.get("/-/ready"); err == nil && code == http.StatusOK {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("prometheus exited at start:\n%s", s.logs)
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("prometheus not ready at %s after 30s:\n%s", s.URL, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop asks Prometheus to stop, and kills it after 10s.
func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Logs is what Prometheus printed (warnings and errors).
func (s *Server) Logs() string { return s.logs.String() }

// get GETs path on the server.
func (s *Server) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Query runs an instant PromQL query (/api/v1/query) and returns its
// vector.
func (s *Server) Query(expr string) ([]Sample, error) {
	code, body, err := s.get("/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK || r.Status != "success" {
		return nil, fmt.Errorf("query %s: HTTP %d %s %v: %s", expr, code, r.Error, err, body)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s, want vector", expr, r.Data.ResultType)
	}
	out := make([]Sample, len(r.Data.Result))
	for i, res := range r.Data.Result {
		v, _ := res.Value[1].(string)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", expr, res.Value[1], err)
		}
		out[i] = Sample{Metric: res.Metric, Value: f}
	}
	return out, nil
}

// WaitValue waits up to limit until expr yields exactly one sample of
// value want, and fails the test with the last answer otherwise.
func (s *Server) WaitValue(t testing.TB, expr string, want float64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := s.Query(expr)
		if err == nil && len(got) == 1 && got[0].Value == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus: %s = %v (err %v) after %s, want one sample of %v\nprometheus logs:\n%s", expr, got, err, limit, want, s.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
