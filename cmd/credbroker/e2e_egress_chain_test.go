package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
)

// dialGuardLine is what the failpoints daemon prints for every dial the
// egress dial guard refused (CREDBROKER_EGRESS_DIAL_GUARD=1).
const dialGuardLine = "EGRESS DIAL GUARD: "

// TestEgressChainBwrap: the whole chain, for real: the daemon's gateway
// for a role with egress rules, `credbroker run --sandbox bwrap`, the
// forwarder `credbroker exec` starts inside, and the real curl and openssl
// as the agent. The agent reaches the allowed HTTPS and HTTP servers by
// their broker.egress.hosts name (HTTPS verified against the test CA), and
// the allowed port over SOCKS5; everything else is refused with a reason
// it can read: a host not allowed (403 and X-Credbroker-Denied), the
// host's 127.0.0.1 and the metadata address through the proxy (403 even
// though the role allows 0.0.0.0/0:80, and the dial guard proves nothing
// was dialed: a TEST-NET address the role allows shows the guard does see
// dials), a port not allowed over SOCKS5
// (reply 0x02, curl exit 97), a CONNECT whose SNI is another name. Without
// the proxy nothing gets out: no route, no DNS.
func TestEgressChainBwrap(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "bwrap")
	e := newE2E(t)
	ca := newTestCA(t)
	hp, _ := chainServer(t, "tls-ok", ca)
	pp, plain := chainServer(t, "plain-ok", nil)
	op, other := chainServer(t, "other-ok", nil)
	e.egressConfig(t, "agent-net", nil, []string{
		fmt.Sprintf("%s:%d", chainHost, hp), fmt.Sprintf("%s:%d", chainHost, pp), "192.0.2.1/32:80",
		"0.0.0.0/0:80", // every public address: still not the metadata address
	}, "    vault:\n      policies: [agent-readonly]\n")
	d := e.serve(t, "CREDBROKER_EGRESS_DIAL_GUARD=1")
	project := e.sandboxProject(t, filepath.Join(e.dir, "work"), map[string][]byte{"ca.pem": ca.PEM}, nil)

	r := strings.NewReplacer("$H", chainHost, "HP", strconv.Itoa(hp), "PP", strconv.Itoa(pp), "OP", strconv.Itoa(op)).Replace
	script := r(`deny() { curl -sS --max-time 20 --proxy http://127.0.0.1:3128 --noproxy '' -o /dev/null -D - "$1" 2>&1 | tr -d '\r' | grep -i -e '^HTTP/' -e '^x-credbroker-denied' | tr '\n' '|'; }
echo "https: $(curl -sS --max-time 20 --cacert /workspace/ca.pem https://$H:HP/ 2>&1)"
echo "http: $(curl -sS --max-time 20 http://$H:PP/ 2>&1)"
echo "socks: $(curl -sS --max-time 20 --socks5-hostname 127.0.0.1:1080 http://$H:PP/ 2>&1)"
echo "denied: $(deny http://denied.credbroker.test/)"
curl -sS --max-time 20 --cacert /workspace/ca.pem https://denied.credbroker.test/ >/dev/null 2>&1; echo "denied-tls: $?"
echo "loopback: $(deny http://127.0.0.1:PP/loopback-probe)"
echo "metadata: $(deny http://169.254.169.254/latest/meta-data/)"
echo "guarded: $(curl -sS --max-time 20 -o /dev/null -w '%{http_code}' http://192.0.2.1/ 2>/dev/null)"
curl -sS --max-time 20 --socks5-hostname 127.0.0.1:1080 http://$H:OP/socks-probe >/dev/null 2>&1; echo "socks-denied: $?"
openssl s_client -proxy 127.0.0.1:3128 -connect $H:HP -servername $H -CAfile /workspace/ca.pem -verify_return_error </dev/null >/dev/null 2>&1; echo "sni-same: $?"
openssl s_client -proxy 127.0.0.1:3128 -connect $H:HP -servername other.credbroker.test </dev/null >/dev/null 2>&1; echo "sni-other: $?"
curl -sS --max-time 5 --noproxy '*' --cacert /workspace/ca.pem https://$H:HP/ >/dev/null 2>&1; echo "direct-name: $?"
curl -sS --max-time 5 --noproxy '*' http://127.0.0.1:PP/direct-probe >/dev/null 2>&1; echo "direct-ip: $?"
curl -sS --max-time 5 --noproxy '*' http://169.254.169.254/ >/dev/null 2>&1; echo "direct-metadata: $?"
getent hosts example.com >/dev/null 2>&1; echo "dns: $?"`)
	p := e.start(t, "run egress (bwrap)", nil, "run", "--role", "agent-net", "--sandbox", "bwrap",
		"--project", project, "--uid", strconv.Itoa(nobody), "--", "sh", "-c", script)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	got := lines(p.stdout.String())
	want := map[string]string{
		"https":           "tls-ok",
		"http":            "plain-ok",
		"socks":           "plain-ok",
		"denied-tls":      "56", // CONNECT answered 403
		"guarded":         "502",
		"socks-denied":    "97", // SOCKS5 reply 0x02: not allowed
		"sni-same":        "0",
		"sni-other":       "1",
		"direct-name":     "6", // could not resolve
		"direct-ip":       "7", // the sandbox's own loopback: nothing listens
		"direct-metadata": "7", // no route
		"dns":             "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"denied", "loopback", "metadata"} {
		if !strings.HasPrefix(got[k], "HTTP/1.1 403") || !strings.Contains(got[k], "X-Credbroker-Denied: ") {
			t.Errorf("%s = %q, want a 403 with X-Credbroker-Denied", k, got[k])
		}
	}
	if !strings.Contains(got["denied"], "roles.agent-net.egress.allow") {
		t.Errorf("the denial does not name the config entry that would allow it: %q", got["denied"])
	}
	if t.Failed() {
		t.Logf("agent output:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	}
	for _, probe := range []string{"/loopback-probe", "/direct-probe"} {
		if plain.has(probe) {
			t.Errorf("the host's server was reached by %s", probe)
		}
	}
	if other.has("/socks-probe") {
		t.Errorf("the server on a port not allowed was reached over SOCKS5")
	}
	var guarded []string
	for l := range strings.Lines(d.stderr.String()) {
		if _, addr, ok := strings.Cut(strings.TrimSpace(l), dialGuardLine); ok {
			guarded = append(guarded, addr)
		}
	}
	if fmt.Sprint(guarded) != "[192.0.2.1:80]" {
		t.Errorf("dials the guard refused: %q, want only the allowed TEST-NET address 192.0.2.1:80 (nothing for the metadata address)", guarded)
	}
}

// TestEgressChainDocker: the same chain in a real Docker container (the
// FROM scratch busybox image, --network none), started by `credbroker run
// --sandbox docker`: busybox wget (HTTP) and a small static Go probe
// (HTTPS, testdata/egressprobe: busybox wget has no TLS) reach the allowed
// servers by their broker.egress.hosts name through the forwarder and the
// daemon's gateway; a host not allowed and the metadata address get 403
// with X-Credbroker-Denied (read with busybox nc: wget hides the headers
// of an error), a CONNECT to a host not allowed is refused, and nothing
// non-loopback is dialed; without the proxy neither the name nor an
// address gets anywhere: the container has only lo.
func TestEgressChainDocker(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "docker")
	img := sandboxtest.Image(t)
	e := newE2E(t)
	ca := newTestCA(t)
	hp, tlsLog := chainServer(t, "tls-ok", ca)
	pp, plain := chainServer(t, "plain-ok", nil)
	e.egressConfig(t, "agent-net", nil, []string{fmt.Sprintf("%s:%d", chainHost, pp), fmt.Sprintf("%s:%d", chainHost, hp)},
		"    vault:\n      policies: [agent-readonly]\n")
	d := e.serve(t, "CREDBROKER_EGRESS_DIAL_GUARD=1")
	project := e.sandboxProject(t, filepath.Join(e.dir, "work"), map[string][]byte{"ca.pem": ca.PEM}, nil)
	probe := filepath.Join(project, "egressprobe")
	build := exec.Command("go", "build", "-o", probe, "./testdata/egressprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	script := strings.NewReplacer("$H", chainHost, "PP", strconv.Itoa(pp), "HP", strconv.Itoa(hp)).Replace(`echo "allowed: $(wget -q -O- http://$H:PP/ 2>&1)"
echo "https: $(/workspace/egressprobe /workspace/ca.pem https://$H:HP/ 2>&1)"
echo "https-denied: $(/workspace/egressprobe /workspace/ca.pem https://denied.credbroker.test/ 2>&1)"
echo "https-direct: $(HTTPS_PROXY= https_proxy= /workspace/egressprobe /workspace/ca.pem https://$H:HP/direct-probe 2>&1)"
deny() { printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" "$2" | nc 127.0.0.1 3128 2>&1 | tr -d '\r' | grep -i -e '^HTTP/1' -e '^x-credbroker-denied' | tr '\n' '|'; }
echo "denied: $(deny http://denied.credbroker.test/ denied.credbroker.test)"
echo "metadata: $(deny http://169.254.169.254/latest/meta-data/ 169.254.169.254)"
wget -q -Y off -O- http://$H:PP/direct-probe >/dev/null 2>&1; echo "direct-name: $?"
wget -q -Y off -O- http://127.0.0.1:PP/direct-probe >/dev/null 2>&1; echo "direct-ip: $?"
echo "ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"`)
	p := e.start(t, "run egress (docker)", nil, "run", "--role", "agent-net", "--sandbox", "docker", "--image", img,
		"--project", project, "--uid", strconv.Itoa(nobody), "--", "sh", "-c", script)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	got := lines(p.stdout.String())
	want := map[string]string{"allowed": "plain-ok", "https": "tls-ok", "direct-name": "1", "direct-ip": "1", "ifaces": "lo,"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"denied", "metadata"} {
		if !strings.Contains(got[k], "HTTP/1.1 403") || !strings.Contains(strings.ToLower(got[k]), "x-credbroker-denied: ") {
			t.Errorf("%s = %q, want a 403 with X-Credbroker-Denied", k, got[k])
		}
	}
	if !strings.Contains(got["https-denied"], "Forbidden") {
		t.Errorf("https-denied = %q, want the CONNECT refused (Forbidden)", got["https-denied"])
	}
	if !strings.HasPrefix(got["https-direct"], "error: ") {
		t.Errorf("https-direct = %q, want an error (no route, no DNS)", got["https-direct"])
	}
	if plain.has("/direct-probe") || tlsLog.has("/direct-probe") {
		t.Errorf("the host's server was reached without the proxy")
	}
	if strings.Contains(d.stderr.String(), dialGuardLine) {
		t.Errorf("the gateway dialed a non-loopback address:\n%s", d.stderr)
	}
	t.Logf("agent output:\n%s", p.stdout)
}
