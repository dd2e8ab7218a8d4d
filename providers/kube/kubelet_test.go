package kube_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testbin"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
)

// TestKubeletStandIn: the real kubectl, through the real kube-apiserver,
// reads logs from, execs into (with and without stdin, and with an exit
// code) and forwards a port of a pod bound to the kubelet stand-in. The
// proxy-delivery end-to-end test relies on these paths; this shows they
// work with a plain admin kubeconfig first.
func TestKubeletStandIn(t *testing.T) {
	t.Parallel()
	s := kubetest.Shared(t)
	k := s.StartKubelet(t)
	ns := s.Namespace(t)
	k.Pod(t, s, ns, "web")
	pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "forwarded-ok") }))
	t.Cleanup(pod.Close)
	k.Forward(80, pod.Listener.Addr().String())

	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", s.Kubeconfig, "--context", kubetest.AdminContext, "-n", ns}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string
		exit        int
	}{
		{"logs", "", []string{"logs", "web"}, k.LogLines[0] + "\n" + k.LogLines[1], 0},
		{"logs -f", "", []string{"logs", "-f", "web"}, k.LogLines[0] + "\n" + k.LogLines[1], 0},
		{"exec echo", "", []string{"exec", "web", "--", "echo", "exec", "ok"}, "exec ok", 0},
		{"exec -i cat", "through stdin", []string{"exec", "-i", "web", "--", "cat"}, "through stdin", 0},
		{"exec exit 3", "", []string{"exec", "web", "--", "exit", "3"}, "command terminated with exit code 3", 3},
	} {
		out, err := run(c.stdin, c.args...)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if out != c.want || code != c.exit {
			t.Errorf("kubectl %s: %q (exit %d), want %q (exit %d)", c.name, out, code, c.want, c.exit)
		}
	}

	// port-forward: kubectl listens on a local port; a GET on it reaches
	// the test's server through the API server and the stand-in.
	port, err := testbin.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pf := exec.Command("kubectl", "--kubeconfig", s.Kubeconfig, "--context", kubetest.AdminContext, "-n", ns,
		"port-forward", "pod/web", fmt.Sprintf("%d:80", port))
	pf.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pf.Process.Kill(); _ = pf.Wait() })
	got, err := getUntil(fmt.Sprintf("http://127.0.0.1:%d/", port), 20*time.Second)
	if err != nil || got != "forwarded-ok" {
		t.Errorf("GET through kubectl port-forward: %q, %v; want forwarded-ok", got, err)
	}
	seen := strings.Join(k.Seen(), "\n")
	t.Logf("the stand-in saw:\n%s", seen)
	for _, p := range []string{"GET /containerLogs/" + ns + "/web/app", "/exec/" + ns + "/web/app (upgrade: ", "/portForward/" + ns + "/web (upgrade: "} {
		if !strings.Contains(seen, p) {
			t.Errorf("the stand-in never saw %s from the API server; it saw:\n%s", p, seen)
		}
	}
}

func getUntil(url string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := c.Get(url) //nolint:noctx // local test server
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), err
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
