package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/testbin"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
)

// awsVaultVersion is the aws-vault release compared with (see
// scripts/build-aws-vault.sh).
const awsVaultVersion = "v7.2.0"

const benchRoleARN = "arn:aws:iam::000000000000:role/agent-s3"

// BenchmarkAWSSessionStart compares starting an AWS-only session with
// credbroker and with aws-vault, whole commands, against the same MinIO
// STS, both running `true` with fresh AssumeRole credentials:
//
//   - credbroker: `credbroker session start --role agent-s3 -- true`
//     against a running daemon: AssumeRole (with a session policy),
//     session dir written on tmpfs, `true` run, session ended (dir wiped,
//     MinIO revoke-tokens for the session), store and audit records;
//   - aws-vault: `aws-vault exec --no-session agent-s3 -- true`: master
//     keys from its `file` keyring (decrypted with a passphrase), one
//     AssumeRole, execve of `true`. No MFA, so its session cache is not
//     used and every run calls STS (checked with --debug in setup). It
//     reaches MinIO through stsProxy (CONNECT + TLS to a local CA):
//     v7.2.0 has no STS endpoint setting;
//   - assumerole-direct / assumerole-via-tls-proxy: one AssumeRole on a
//     new connection from this process, straight to MinIO and through
//     stsProxy; their difference is what the proxy hop adds to each
//     aws-vault run.
func BenchmarkAWSSessionStart(b *testing.B) {
	mc := miniotest.Start(b)
	minioHost := mc.URL[len("http://"):]
	proxy := startSTSProxy(b, minioHost)
	rootEnv := []string{"AWS_ACCESS_KEY_ID=" + miniotest.RootUser, "AWS_SECRET_ACCESS_KEY=" + miniotest.RootPassword,
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent"}
	d := startBenchDaemon(b, fmt.Sprintf(`providers:
  aws:
    region: %s
    sts_endpoint: %s
    endpoint_url: %s
    revocation: minio-revoke-tokens
roles:
  agent-s3:
    ttl: 20m
    max_ttl: 2h
    aws:
      role_arn: %s
      max_duration: 1h
      policy: '%s'
`, miniotest.Region, mc.URL, mc.URL, benchRoleARN, miniotest.ReadOnlyPolicy), rootEnv...)
	cb := releaseBin(b)
	cbEnv := baseEnv()
	b.Run("credbroker-session-start", func(b *testing.B) {
		for b.Loop() {
			runQuiet(b, cbEnv, cb, "--config", d.config, "session", "start", "--role", "agent-s3", "--", "true")
		}
	})

	av, avEnv := setupAWSVault(b, proxy)
	b.Run("aws-vault-exec", func(b *testing.B) {
		for b.Loop() {
			runQuiet(b, avEnv, av, "exec", "--no-session", "agent-s3", "--", "true")
		}
	})

	in := &sts.AssumeRoleInput{RoleArn: aws.String(benchRoleARN), RoleSessionName: aws.String("bench"), DurationSeconds: aws.Int32(3600)}
	creds := credentials.NewStaticCredentialsProvider(miniotest.RootUser, miniotest.RootPassword, "")
	assume := func(b *testing.B, endpoint string, tr func() *http.Transport) {
		for b.Loop() {
			hc := &http.Client{Transport: tr()}
			c := sts.New(sts.Options{Region: miniotest.Region, Credentials: creds, HTTPClient: hc, BaseEndpoint: aws.String(endpoint)})
			if _, err := c.AssumeRole(context.Background(), in); err != nil {
				b.Fatal(err)
			}
			hc.CloseIdleConnections()
		}
	}
	b.Run("assumerole-direct", func(b *testing.B) {
		assume(b, mc.URL, func() *http.Transport { return &http.Transport{} })
	})
	proxyURL, _ := url.Parse(proxy.URL)
	b.Run("assumerole-via-tls-proxy", func(b *testing.B) {
		assume(b, "https://sts.us-east-1.amazonaws.com", func() *http.Transport {
			return &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: proxy.Pool}}
		})
	})
}

// setupAWSVault gives aws-vault a temp HOME with a file keyring holding
// MinIO's root keys as profile "minio-root" and a profile "agent-s3" that
// assumes the same role as credbroker's agent-s3 from it.
func setupAWSVault(b *testing.B, proxy *stsProxy) (string, []string) {
	b.Helper()
	bin := testbin.Path("CREDBROKER_AWS_VAULT_BIN", "aws-vault", awsVaultVersion)
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("aws-vault not found at %s: run scripts/build-aws-vault.sh (make bench does)", bin)
	}
	home := b.TempDir()
	cfg := filepath.Join(home, ".aws", "config")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		b.Fatal(err)
	}
	profiles := fmt.Sprintf("[profile minio-root]\nregion = %s\n\n[profile agent-s3]\nregion = %s\nsource_profile = minio-root\nrole_arn = %s\n",
		miniotest.Region, miniotest.Region, benchRoleARN)
	if err := os.WriteFile(cfg, []byte(profiles), 0o600); err != nil {
		b.Fatal(err)
	}
	var env []string
	for _, kv := range baseEnv() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "AWS_") {
			if k != "HOME" && k != "HTTPS_PROXY" && k != "https_proxy" && k != "NO_PROXY" && k != "no_proxy" && k != "SSL_CERT_FILE" {
				env = append(env, kv)
			}
		}
	}
	env = append(env, "HOME="+home, "AWS_CONFIG_FILE="+cfg, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "none"),
		"AWS_VAULT_BACKEND=file", "AWS_VAULT_FILE_DIR="+filepath.Join(home, "keyring"),
		"AWS_VAULT_FILE_PASSPHRASE=bench-passphrase", "AWS_VAULT_DISABLE_HELP_MESSAGE=1",
		"HTTPS_PROXY="+proxy.URL, "SSL_CERT_FILE="+proxy.CAFile)
	add := append(env[:len(env):len(env)], "AWS_ACCESS_KEY_ID="+miniotest.RootUser, "AWS_SECRET_ACCESS_KEY="+miniotest.RootPassword)
	runQuiet(b, add, bin, "add", "--env", "minio-root")
	// One debug run: AssumeRole must be called, not answered from a cache.
	out := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "--debug", "exec", "--no-session", "agent-s3", "--", "true")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	if err := cmd.Run(); err != nil {
		b.Fatalf("aws-vault exec: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "Generated credentials") || strings.Contains(out.String(), "Re-using cached credentials") {
		b.Fatal("aws-vault did not call AssumeRole (its --debug log lacks \"Generated credentials\")")
	}
	return bin, env
}
