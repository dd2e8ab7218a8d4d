package awssts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/providertest"
)

var readonlyRole = configs.Role{
	Name: "agent-readonly",
	AWS: &configs.AWSRole{
		RoleARN:       "arn:aws:iam::000000000000:role/agent-readonly",
		MaxDuration:   configs.Duration(time.Hour),
		SessionPolicy: miniotest.ReadOnlyPolicy,
	},
}

func newMinIOProvider(t *testing.T, srv *miniotest.Server, opts ...awssts.Option) *awssts.Provider {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.RootUser)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.RootPassword)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	p, err := awssts.New(context.Background(), configs.AWSProvider{
		Region: miniotest.Region, STSEndpoint: srv.URL, EndpointURL: srv.URL, Revocation: configs.RevokeMinIOTokens,
	}, map[string]configs.Role{readonlyRole.Name: readonlyRole}, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// creds reads the credential_process JSON of a grant.
func creds(t *testing.T, g providers.Grant) (id, secretKey, token string) {
	t.Helper()
	var pc struct {
		AccessKeyID                               string `json:"AccessKeyId"`
		SecretAccessKey, SessionToken, Expiration string
	}
	if err := json.Unmarshal(g.Files[awssts.ProcessFile].Bytes(), &pc); err != nil {
		t.Fatalf("credentials.json: %v", err)
	}
	return pc.AccessKeyID, pc.SecretAccessKey, pc.SessionToken
}

func get(ctx context.Context, c *s3.Client, bucket string) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(miniotest.Object)})
	if err == nil {
		out.Body.Close()
	}
	return err
}

func put(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("new.txt"), Body: strings.NewReader("x")})
	return err
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestConformanceMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		p := newMinIOProvider(t, srv)
		client := func(g providers.Grant) *s3.Client { return srv.S3(creds(t, g)) }
		return providertest.Harness{
			Provider:         p,
			Role:             readonlyRole,
			MinLife:          configs.MinSTSDuration,
			RevokesBySession: true,
			Use:              func(ctx context.Context, g providers.Grant) error { return get(ctx, client(g), miniotest.Readable) },
			Denied: func(ctx context.Context, g providers.Grant) error {
				c := client(g)
				if err := put(ctx, c, miniotest.Readable); code(err) != "AccessDenied" {
					return fmt.Errorf("write to %s: got %v, want AccessDenied", miniotest.Readable, err)
				}
				if err := get(ctx, c, miniotest.Other); code(err) != "AccessDenied" {
					return fmt.Errorf("read %s: got %v, want AccessDenied", miniotest.Other, err)
				}
				return nil
			},
			Rejected: func(ctx context.Context, g providers.Grant) error {
				err := get(ctx, client(g), miniotest.Readable)
				if err == nil {
					return errors.New("revoked credentials can still read")
				}
				if c := code(err); c != "InvalidAccessKeyId" && c != "AccessDenied" && c != "ExpiredToken" && c != "InvalidTokenId" {
					return fmt.Errorf("revoked credentials: got %v, want an authentication error", err)
				}
				return nil
			},
		}
	})
}

// TestRefreshReplacesCredentials: Renew re-mints; the new credentials work
// and carry a new key id, and the session's revocation covers both.
func TestRefreshReplacesCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	p := newMinIOProvider(t, srv)
	ctx := context.Background()
	s := providertest.NewSession(readonlyRole.Name, 30*time.Minute)
	g, err := p.Mint(ctx, s, readonlyRole)
	if err != nil {
		t.Fatal(err)
	}
	ng, err := p.Renew(ctx, s, g.Leases[0], providertest.Files(g.Files))
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if ng.Leases[0].ID != g.Leases[0].ID || ng.Leases[0].ExternalID == g.Leases[0].ExternalID {
		t.Fatalf("renewed lease %s/%s, want the same id with a new key id (was %s)", ng.Leases[0].ID, ng.Leases[0].ExternalID, g.Leases[0].ExternalID)
	}
	for _, f := range []string{awssts.ProcessFile, awssts.CredentialsFile, awssts.ConfigFile} {
		if _, ok := ng.Files[f]; !ok {
			t.Errorf("renewal does not rewrite %s", f)
		}
	}
	if err := get(ctx, srv.S3(creds(t, ng)), miniotest.Readable); err != nil {
		t.Fatalf("refreshed credentials do not work: %v", err)
	}
	if err := p.Revoke(ctx, ng.Leases[0]); err != nil {
		t.Fatal(err)
	}
	for i, gg := range []providers.Grant{g, ng} {
		if err := get(ctx, srv.S3(creds(t, gg)), miniotest.Readable); err == nil {
			t.Errorf("credentials %d of the session still work after its revocation", i)
		}
	}
}

// TestShortSessionGets900s: STS's minimum applies; the broker revokes at
// the session's end instead.
func TestShortSessionGets900s(t *testing.T) {
	srv := miniotest.Start(t)
	p := newMinIOProvider(t, srv)
	s := providertest.NewSession(readonlyRole.Name, 2*time.Minute)
	g, err := p.Mint(context.Background(), s, readonlyRole)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(g.Leases[0].ExpiresAt); d < 14*time.Minute || d > 16*time.Minute {
		t.Errorf("credentials for a 2m session live %v, want STS's 15m minimum", d)
	}
}

// TestLifeByBrokerClock: the lease's life is counted on the broker's
// clock, not read from the Expiration of an STS server whose clock is
// hours behind (the daemon after a clock jump): read from it, every
// credential looked expired at birth and was re-minted on every tick.
func TestLifeByBrokerClock(t *testing.T) {
	srv := miniotest.Start(t)
	for _, skew := range []time.Duration{0, 3 * time.Hour, -3 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			now := func() time.Time { return time.Now().Add(skew) }
			p := newMinIOProvider(t, srv, awssts.WithClock(now))
			s := providertest.NewSession(readonlyRole.Name, time.Hour)
			s.ExpiresAt = now().Add(time.Hour)
			before := now()
			g, err := p.Mint(context.Background(), s, readonlyRole)
			if err != nil {
				t.Fatal(err)
			}
			l := g.Leases[0]
			if l.IssuedAt.Before(before) || l.IssuedAt.After(now()) {
				t.Errorf("issued at %v, want between %v and %v by the broker's clock", l.IssuedAt, before, now())
			}
			if life := l.ExpiresAt.Sub(l.IssuedAt); life < 59*time.Minute || life > time.Hour {
				t.Errorf("a 1h credential lives %v by the broker's clock (issued %v, expires %v)", life, l.IssuedAt, l.ExpiresAt)
			}
		})
	}
}

// TestAWSCLIUsesSessionFiles runs the official AWS CLI (Debian's awscli)
// with nothing but the session's env and files: it reads through
// credential_process and is refused what the policy does not allow.
func TestAWSCLIUsesSessionFiles(t *testing.T) {
	const awsCLI = "/usr/bin/aws"
	if _, err := os.Stat(awsCLI); err != nil {
		t.Fatalf("the AWS CLI is not installed at %s: run `make testbins` (installs Debian's awscli)", awsCLI)
	}
	srv := miniotest.Start(t)
	p := newMinIOProvider(t, srv)
	ctx := context.Background()
	g, err := p.Mint(ctx, providertest.NewSession(readonlyRole.Name, 20*time.Minute), readonlyRole)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for rel, v := range g.Files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, v.Bytes(), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "CREDBROKER_SESSION_DIR=" + dir}
	for k, v := range g.Env {
		env = append(env, k+"="+strings.ReplaceAll(v.Reveal(), "${CREDBROKER_SESSION_DIR}", dir))
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(awsCLI, append([]string{"--endpoint-url", srv.URL}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("s3", "cp", "s3://"+miniotest.Readable+"/"+miniotest.Object, "-")
	if err != nil || !strings.Contains(out, "hello from "+miniotest.Readable) {
		t.Fatalf("aws s3 cp with the session's files: %v\n%s", err, out)
	}
	out, err = run("s3", "cp", "s3://"+miniotest.Other+"/"+miniotest.Object, "-")
	if err == nil || !strings.Contains(out, "AccessDenied") && !strings.Contains(out, "Forbidden") {
		t.Fatalf("aws s3 cp from the other bucket: %v\n%s; want AccessDenied", err, out)
	}
	if err := p.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	out, err = run("s3", "cp", "s3://"+miniotest.Readable+"/"+miniotest.Object, "-")
	if err == nil {
		t.Fatalf("aws s3 cp after revocation succeeded:\n%s", out)
	}
	id, secretKey, token := creds(t, g)
	for _, v := range []string{secretKey, token} {
		if strings.Contains(out, v) {
			t.Fatal("the AWS CLI's error output contains a secret")
		}
	}
	_ = id
}

func TestNoSecretInErrors(t *testing.T) {
	srv := miniotest.Start(t)
	p := newMinIOProvider(t, srv)
	bad := readonlyRole
	aw := *bad.AWS
	aw.SessionPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:Nope","Resource":"x"}]}`
	bad.AWS = &aw
	_, err := p.Mint(context.Background(), providertest.NewSession(bad.Name, 20*time.Minute), bad)
	if err == nil {
		t.Fatal("minting with an invalid session policy succeeded")
	}
	if strings.Contains(err.Error(), miniotest.RootPassword) {
		t.Fatal("error contains the broker's secret key")
	}
}
