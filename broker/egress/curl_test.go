package egress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// curlThrough runs the real curl with the gateway socket as its SOCKS5
// proxy (curl >= 7.84 takes socks5h://localhost/<socket path>).
func curlThrough(t *testing.T, sock string, args ...string) (string, int) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (apt-get install curl): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := append([]string{"-sS", "--noproxy", "", "--proxy", "socks5h://localhost" + sock}, args...)
	out, err := exec.CommandContext(ctx, curl, all...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestCurlThroughGateway(t *testing.T) {
	srv, _, ca := tlsServer(t, "web.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "curl ok")
	}))
	ap := addrPort(t, srv.Listener)
	e := newTestEnv(t, testConfig([]string{"web.test:" + portOf(ap)}, nil, map[string]string{"web.test": "127.0.0.1"}), ap)

	out, code := curlThrough(t, e.sock, "--cacert", ca, "https://web.test:"+portOf(ap)+"/?k=v")
	if code != 0 || out != "curl ok" {
		t.Fatalf("curl to an allowed host: exit %d, %q", code, out)
	}
	out, code = curlThrough(t, e.sock, "--cacert", ca, "https://denied.test/")
	if code != 97 || !strings.Contains(out, "SOCKS5 connection to denied.test. (2)") { // reply 2: not allowed by ruleset
		t.Errorf("curl to a denied host: exit %d, %q", code, out)
	}
	out, code = curlThrough(t, e.sock, "http://169.254.169.254/latest/meta-data/")
	if code == 0 {
		t.Errorf("curl to the metadata address: exit 0, %q", out)
	}
	// Records come in the order connections close: an allowed tunnel's
	// may follow the next refusal's.
	rs := e.waitRecords(3)
	allowed := 0
	for _, r := range rs {
		if r.Allowed {
			allowed++
			if r.Proto != "socks5" || r.Host != "web.test" {
				t.Errorf("allowed record %+v", r)
			}
		}
	}
	if allowed != 1 {
		t.Errorf("%d allowed records, want 1: %+v", allowed, rs)
	}
	if e.dialCount() != 1 {
		t.Errorf("%d dials, want 1", e.dialCount())
	}
}
