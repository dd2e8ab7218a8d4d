package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientBinaryLinksNoProviderSDK: bin/credbroker, the CLI that is also
// mounted into every sandbox, links none of the provider SDKs or store
// drivers (they made it 67 MB and slow to start); credbroker-daemon does.
// The modules a Go binary was built from are recorded in it (go version -m).
func TestClientBinaryLinksNoProviderSDK(t *testing.T) {
	heavy := []string{"github.com/aws/aws-sdk-go-v2", "github.com/hashicorp/vault/api", "k8s.io/client-go", "modernc.org/sqlite", "github.com/jackc/pgx",
		"github.com/prometheus/client_golang"}
	mods := func(bin string) string {
		out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go version -m %s: %v\n%s", bin, err, out)
		}
		return string(out)
	}
	client, daemon := mods(cbBin), mods(cbDaemon)
	for _, m := range heavy {
		if strings.Contains(client, "\t"+m) {
			t.Errorf("credbroker links %s; only credbroker-daemon may", m)
		}
		if !strings.Contains(daemon, "\t"+m) {
			t.Errorf("credbroker-daemon does not link %s: the check above proves nothing", m)
		}
	}
	if st, err := os.Stat(cbBin); err != nil || st.Size() > 15<<20 {
		t.Errorf("credbroker is %d bytes (with failpoints, unstripped); the sandbox binary must stay under 15 MB", st.Size())
	}
}

// TestServeWithoutDaemonBinary: a credbroker installed without
// credbroker-daemon beside it says what is missing and how to fix it.
func TestServeWithoutDaemonBinary(t *testing.T) {
	dir := t.TempDir()
	lone := filepath.Join(dir, "credbroker")
	b, err := os.ReadFile(cbBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lone, "serve")
	cmd.Env = append(os.Environ(), "CREDBROKER_DAEMON=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "credbroker-daemon not found next to") || !strings.Contains(string(out), "CREDBROKER_DAEMON") {
		t.Fatalf("serve without the daemon binary: %v\n%s", err, out)
	}
}
