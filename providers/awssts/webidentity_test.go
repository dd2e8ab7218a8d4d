package awssts_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/providertest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestWebIdentityAgainstMinIO: the broker signs a JWT per session, MinIO
// fetches the broker's discovery document and JWKS and verifies it, and
// AssumeRoleWithWebIdentity returns credentials narrowed by the session
// policy; revocation works as with AssumeRole.
func TestWebIdentityAgainstMinIO(t *testing.T) {
	addr := freeAddr(t)
	wi := configs.AWSWebIdentity{
		Issuer: "http://" + addr, Listen: addr, KeyFile: filepath.Join(t.TempDir(), "oidc.pem"),
		Audience: "credbroker-test", Subject: "credbroker", TokenTTL: configs.Duration(5 * time.Minute),
		Claims: map[string]string{"credbroker_policy": "readwrite"},
	}
	// MinIO reads the discovery document when it starts: serve it first
	// from a standalone issuer with the same key.
	pre, err := awssts.NewIssuer(wi)
	if err != nil {
		t.Fatal(err)
	}
	if err := pre.Start(); err != nil {
		t.Fatal(err)
	}
	srv := miniotest.StartWith(t, []string{
		"MINIO_IDENTITY_OPENID_CONFIG_URL=http://" + addr + "/.well-known/openid-configuration",
		"MINIO_IDENTITY_OPENID_CLIENT_ID=credbroker-test",
		"MINIO_IDENTITY_OPENID_CLAIM_NAME=credbroker_policy",
	})
	if err := pre.Close(); err != nil {
		t.Fatal(err)
	}

	// Root keys only for revocation (MinIO's revoke-tokens for the OpenID
	// parent needs admin rights); minting uses the JWT alone.
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.RootUser)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.RootPassword)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	p, err := awssts.New(context.Background(), configs.AWSProvider{
		Region: miniotest.Region, STSEndpoint: srv.URL, Revocation: configs.RevokeMinIOTokens, WebIdentity: &wi,
	}, map[string]configs.Role{readonlyRole.Name: readonlyRole}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	ctx := context.Background()
	g, err := p.Mint(ctx, providertest.NewSession(readonlyRole.Name, 20*time.Minute), readonlyRole)
	if err != nil {
		t.Fatalf("mint with web identity: %v", err)
	}
	c := srv.S3(creds(t, g))
	if err := get(ctx, c, miniotest.Readable); err != nil {
		t.Fatalf("web identity credentials cannot read: %v", err)
	}
	if err := put(ctx, c, miniotest.Readable); code(err) != "AccessDenied" {
		t.Fatalf("web identity credentials may write although the session policy says no: %v", err)
	}
	if err := p.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := get(ctx, c, miniotest.Readable); err == nil {
		t.Fatal("web identity credentials work after revocation")
	}

	// MinIO really verifies against the broker's JWKS: a token signed by
	// another key is refused.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": "http://" + addr, "sub": "credbroker", "aud": "credbroker-test",
		"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(), "credbroker_policy": "readwrite",
	})
	forgedTok, _ := forged.SignedString(other)
	stsc := sts.New(sts.Options{Region: miniotest.Region, BaseEndpoint: aws.String(srv.URL)})
	if _, err := stsc.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String("arn:aws:iam::000000000000:role/x"), RoleSessionName: aws.String("forged"),
		WebIdentityToken: aws.String(forgedTok),
	}); err == nil {
		t.Fatal("MinIO accepted a token not signed by the broker's key")
	}
}

func TestWebIdentityTokenClaims(t *testing.T) {
	wi := configs.AWSWebIdentity{Issuer: "https://oidc.example.com/", Listen: "127.0.0.1:0",
		KeyFile: filepath.Join(t.TempDir(), "k.pem"), Audience: "sts.amazonaws.com", Subject: "credbroker", TokenTTL: configs.Duration(5 * time.Minute)}
	iss, err := awssts.NewIssuer(wi)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Token("s-abc", "agent-s3")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok.Reveal(), func(*jwt.Token) (any, error) { return iss.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience("sts.amazonaws.com"), jwt.WithIssuer("https://oidc.example.com"))
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	c := parsed.Claims.(jwt.MapClaims)
	if c["sub"] != "credbroker" || c["https://aws.amazon.com/source_identity"] != "s-abc" || c["credbroker_role"] != "agent-s3" {
		t.Errorf("claims = %v", c)
	}
	exp, _ := c.GetExpirationTime()
	if d := time.Until(exp.Time); d > 5*time.Minute+time.Second || d < 4*time.Minute {
		t.Errorf("token lives %v, want 5m", d)
	}
	if _, ok := parsed.Header["kid"]; !ok {
		t.Error("no kid header: STS picks the JWKS key by kid")
	}
	// The key is reused, not regenerated, and kept private.
	again, err := awssts.NewIssuer(wi)
	if err != nil {
		t.Fatal(err)
	}
	if !again.PublicKey().(*rsa.PublicKey).Equal(iss.PublicKey()) {
		t.Error("a second issuer made a new key instead of loading the file")
	}
	if fi, err := os.Stat(wi.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if strings.Contains(tok.String(), ".") {
		t.Error("the token's String() is not redacted")
	}
}

// TestWebIdentityKeyRefusedWhenUnsafe: the signing key is refused when it
// is open to group or others, owned by another uid, or a symlink: whoever
// can read or replace it can sign identities STS trusts.
func TestWebIdentityKeyRefusedWhenUnsafe(t *testing.T) {
	for _, tc := range []struct {
		name   string
		unsafe func(t *testing.T, key string)
		want   string
	}{
		{"mode 0644", func(t *testing.T, key string) { mustDo(t, os.Chmod(key, 0o644)) }, "mode 0644"},
		{"mode 0640", func(t *testing.T, key string) { mustDo(t, os.Chmod(key, 0o640)) }, "mode 0640"},
		{"owned by another uid", func(t *testing.T, key string) {
			if os.Geteuid() != 0 {
				t.Fatal("needs root to chown (the test suite runs as root): run make test as root, as CI does")
			}
			mustDo(t, os.Chown(key, 65534, 65534))
		}, "owned by uid 65534"},
		{"symlink", func(t *testing.T, key string) {
			other := filepath.Join(t.TempDir(), "other.pem")
			mustDo(t, os.Rename(key, other))
			mustDo(t, os.Symlink(other, key))
		}, "is a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wi := configs.AWSWebIdentity{Issuer: "https://oidc.example.com/", Listen: "127.0.0.1:0",
				KeyFile: filepath.Join(t.TempDir(), "k.pem"), Audience: "sts.amazonaws.com", Subject: "credbroker", TokenTTL: configs.Duration(5 * time.Minute)}
			if _, err := awssts.NewIssuer(wi); err != nil { // creates the key, 0600
				t.Fatal(err)
			}
			tc.unsafe(t, wi.KeyFile)
			_, err := awssts.NewIssuer(wi)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), wi.KeyFile) {
				t.Fatalf("NewIssuer with an unsafe key: %v, want an error naming %s and %q", err, wi.KeyFile, tc.want)
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
