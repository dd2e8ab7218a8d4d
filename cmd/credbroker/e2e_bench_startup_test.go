package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/internal/testbin"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// BenchmarkCLIStartup: one op is one process started and waited for.
//
//   - bare-exec: /bin/true (fork+exec+wait from this process, the floor);
//   - credbroker-version: `credbroker version`;
//   - credbroker-exec: `credbroker exec --dir D --allow-writable -- true`
//     on a session dir written by agentenv (Vault, AWS and kube files, as
//     the daemon writes them): load and check session.json, build the
//     environment, execve `true`. --allow-writable because the bench runs
//     on the host; in a sandbox the read-only check is one statfs(2);
//   - vault-version: `vault version` (the Vault test server binary,
//     v1.21.1, built with `-tags "vault minimal"`);
//   - aws-vault-version: `aws-vault --version` (v7.2.0).
func BenchmarkCLIStartup(b *testing.B) {
	cb := releaseBin(b)
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	env := baseEnv()
	dir := benchSessionDir(b)
	cases := []struct {
		name string
		argv []string
	}{
		{"bare-exec", []string{truePath}},
		{"credbroker-version", []string{cb, "version"}},
		{"credbroker-exec", []string{cb, "exec", "--dir", dir, "--allow-writable", "--", "true"}},
		{"vault-version", []string{vaulttest.Binary(), "version"}},
		{"aws-vault-version", []string{testbin.Path("CREDBROKER_AWS_VAULT_BIN", "aws-vault", awsVaultVersion), "--version"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, err := os.Stat(c.argv[0]); err != nil {
				b.Fatalf("%v (run `make testbins`)", err)
			}
			for b.Loop() {
				runQuiet(b, env, c.argv...)
			}
		})
	}
}

// benchSessionDir writes a session dir like one of role agent-full plus
// kube (fake values: the wrapper does not call any server).
func benchSessionDir(b *testing.B) string {
	b.Helper()
	root, err := os.MkdirTemp("/dev/shm", "credbroker-bench-exec-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = exec.Command("chmod", "-R", "u+w", root).Run(); _ = os.RemoveAll(root) })
	w := &agentenv.Writer{Root: filepath.Join(root, "sessions")}
	ref := agentenv.SessionDirRef
	files := map[string]secret.Value{
		"vault/token":               secret.New("hvs.bench-not-a-real-token-0123456789"),
		"vault/secrets/config.json": secret.New(`{"data":{"data":{"greeting":"hello"}}}`),
		"aws/config":                secret.New("[profile credbroker]\ncredential_process = cat " + ref + "/aws/credentials.json\n"),
		"aws/credentials.json":      secret.New(`{"Version":1,"AccessKeyId":"BENCH","SecretAccessKey":"bench-not-a-secret","SessionToken":"bench"}`),
		"kube/config":               secret.New("apiVersion: v1\nkind: Config\n"),
		"kube/token":                secret.New("eyJbench-not-a-token"),
	}
	env := map[string]secret.Value{
		"VAULT_ADDR":      secret.New("http://127.0.0.1:8200"),
		"VAULT_TOKEN":     secret.New("hvs.bench-not-a-real-token-0123456789"),
		"AWS_CONFIG_FILE": secret.New(ref + "/aws/config"),
		"AWS_PROFILE":     secret.New("credbroker"),
		"KUBECONFIG":      secret.New(ref + "/kube/config"),
	}
	now := time.Now()
	dir, err := w.Create(agentenv.Meta{ID: "s-benchbenchbenchb", Role: "agent-full", CreatedAt: now, ExpiresAt: now.Add(time.Hour), UID: -1}, files, env)
	if err != nil {
		b.Fatal(err)
	}
	return dir
}
