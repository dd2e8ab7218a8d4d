package clienttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/credbroker/credbroker/broker/proxy/awssig"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
)

const awsCLI = "/usr/bin/aws" // Debian's awscli (scripts/install-deps.sh)

// minioRig is a real MinIO, the real credentials a session would hold for
// it (an STS session, or the root user for STS calls, which MinIO allows
// only to long-term keys) and the sandbox's placeholders.
type minioRig struct {
	srv         *miniotest.Server
	session     awssig.Creds
	root        awssig.Creds
	placeholder awssig.Creds
}

func newMinIORig(t *testing.T) *minioRig {
	t.Helper()
	if _, err := os.Stat(awsCLI); err != nil {
		t.Fatalf("the AWS CLI is not installed at %s: run `make testbins` (installs Debian's awscli)", awsCLI)
	}
	srv := miniotest.Start(t)
	c := sts.New(sts.Options{Region: miniotest.Region, BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider(miniotest.RootUser, miniotest.RootPassword, "")})
	out, err := c.AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::000000000000:role/awssig"),
		RoleSessionName: aws.String("awssig"), DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatalf("assume role at minio: %v", err)
	}
	return &minioRig{srv: srv,
		session: awssig.Creds{AccessKeyID: *out.Credentials.AccessKeyId, Secret: secret.New(*out.Credentials.SecretAccessKey),
			SessionToken: secret.New(*out.Credentials.SessionToken)},
		root:        awssig.Creds{AccessKeyID: miniotest.RootUser, Secret: secret.New(miniotest.RootPassword)},
		placeholder: randomCreds(t)}
}

// proxy starts a re-signing proxy in front of MinIO with rc as the real
// credentials.
func (m *minioRig) proxy(t *testing.T, rc awssig.Creds, tls bool) (p *resignProxy, endpoint, caFile string) {
	t.Helper()
	u, err := url.Parse(m.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p = &resignProxy{upstream: u, rs: &awssig.Resigner{Placeholder: m.placeholder, Real: func() awssig.Creds { return rc }}}
	endpoint, caFile = startProxy(t, p, tls)
	return p, endpoint, caFile
}

// clientEnv is the environment of an AWS client in the sandbox: only the
// placeholders, no config files, no instance metadata.
func (m *minioRig) clientEnv(t *testing.T, caFile string) []string {
	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=" + m.placeholder.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + m.placeholder.Secret.Reveal(),
		"AWS_SESSION_TOKEN=" + m.placeholder.SessionToken.Reveal(), "AWS_DEFAULT_REGION=" + miniotest.Region,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	if caFile != "" {
		env = append(env, "AWS_CA_BUNDLE="+caFile)
	}
	return env
}

// run runs a client; the output is returned for the caller to check.
func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

// randomFile writes n random bytes to a file in a temp dir.
func randomFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "upload.bin")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func assertSameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes downloaded differ from the %d uploaded", path, len(got), len(want))
	}
}

// The AWS CLI with only the placeholders: a 50 MB multipart upload, a
// listing and the download, through the re-signing proxy over HTTP (the
// CLI signs each part's SHA-256) and HTTPS (UNSIGNED-PAYLOAD).
func TestMinIOAWSCLI(t *testing.T) {
	m := newMinIORig(t)
	src, data := randomFile(t, 50<<20)
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tls]
		t.Run(name, func(t *testing.T) {
			p, endpoint, ca := m.proxy(t, m.session, tls)
			env := m.clientEnv(t, ca)
			key := "s3://" + miniotest.Readable + "/cli-" + name + ".bin"
			mustRun(t, env, awsCLI, "--endpoint-url", endpoint, "s3", "cp", "--only-show-errors", src, key)
			ls := mustRun(t, env, awsCLI, "--endpoint-url", endpoint, "s3", "ls", "s3://"+miniotest.Readable+"/")
			if !strings.Contains(ls, "cli-"+name+".bin") || !strings.Contains(ls, miniotest.Object) {
				t.Fatalf("aws s3 ls does not list the upload and %s:\n%s", miniotest.Object, ls)
			}
			dst := filepath.Join(t.TempDir(), "down.bin")
			mustRun(t, env, awsCLI, "--endpoint-url", endpoint, "s3", "cp", "--only-show-errors", key, dst)
			assertSameFile(t, dst, data)
			p.assertNoRefusals(t)
			seen := p.seen()
			t.Logf("payload modes re-signed: %q", seen)
			if parts := countPrefix(p, "PUT "); parts < 6 {
				t.Fatalf("%d PUTs re-signed, want the 7 parts of a multipart upload (modes %q)", parts, seen)
			}
		})
	}
}

func countPrefix(p *resignProxy, prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for m, c := range p.modes {
		if strings.HasPrefix(m, prefix) {
			n += c
		}
	}
	return n
}

// STS is not S3: its form body is hashed and signed. MinIO answers
// AssumeRole to long-term keys, so the real credentials here are root's.
func TestMinIOSTSThroughProxy(t *testing.T) {
	m := newMinIORig(t)
	p, endpoint, _ := m.proxy(t, m.root, false)
	out := mustRun(t, m.clientEnv(t, ""), awsCLI, "--endpoint-url", endpoint, "sts", "assume-role",
		"--role-arn", "arn:aws:iam::000000000000:role/x", "--role-session-name", "via-proxy", "--output", "json")
	if !strings.Contains(out, `"AccessKeyId"`) {
		t.Fatalf("aws sts assume-role through the proxy returned no credentials:\n%s", out)
	}
	p.assertNoRefusals(t)
}

// The placeholders are worthless without the proxy: MinIO refuses them,
// and the proxy refuses a request signed with anything else.
func TestMinIOPlaceholderRefusedDirect(t *testing.T) {
	m := newMinIORig(t)
	out, err := run(t, m.clientEnv(t, ""), awsCLI, "--endpoint-url", m.srv.URL, "s3", "ls", "s3://"+miniotest.Readable+"/")
	if err == nil || !strings.Contains(out, "InvalidAccessKeyId") {
		t.Fatalf("aws s3 ls straight at MinIO with the placeholders: err %v, want InvalidAccessKeyId:\n%s", err, out)
	}
	p, endpoint, _ := m.proxy(t, m.session, false)
	env := m.clientEnv(t, "")
	for i, kv := range env {
		if strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") {
			env[i] = "AWS_SECRET_ACCESS_KEY=guessed-secret"
		}
	}
	out, err = run(t, env, awsCLI, "--endpoint-url", endpoint, "s3", "ls", "s3://"+miniotest.Readable+"/")
	if err == nil || !strings.Contains(out, awssig.CodeSignatureDoesNotMatch) {
		t.Fatalf("aws s3 ls through the proxy with a wrong secret: err %v, want SignatureDoesNotMatch:\n%s", err, out)
	}
	if len(p.refusals) == 0 {
		t.Fatal("the proxy recorded no refusal")
	}
}
