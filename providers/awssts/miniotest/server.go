// Package miniotest starts a real MinIO server on 127.0.0.1 for tests: an
// S3 server whose STS AssumeRole answers aws-sdk-go-v2, enforces session
// policies on S3 calls and revokes tokens through its admin API.
package miniotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/credbroker/credbroker/internal/testbin"
)

// Version is the MinIO build the tests use (see scripts/build-minio.sh).
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Root credentials of the test server; the broker uses them as its own
// identity in tests (session policies still narrow what sessions get).
const (
	RootUser     = "credbroker-root"
	RootPassword = "credbroker-root-secret"
	Region       = "us-east-1"
)

// Buckets the server is seeded with: a session role may read Readable;
// Other holds something it must not see.
const (
	Readable = "agent-readable"
	Other    = "agent-other"
	Object   = "hello.txt"
)

// Server is a running MinIO.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// Binary returns the MinIO binary path: $CREDBROKER_MINIO_BIN or the cache
// that scripts/build-minio.sh fills.
func Binary() string { return testbin.Path("CREDBROKER_MINIO_BIN", "minio", Version) }

// Start runs MinIO until the test ends and seeds the buckets. A missing
// binary is a failure, never a skip: `make testbins` builds it.
func Start(t testing.TB) *Server { return StartWith(t, nil) }

// StartWith is Start with extra MINIO_* environment (e.g. an OpenID
// identity provider).
func StartWith(t testing.TB, env []string) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("minio binary not found at %s: run `make testbins` (builds MinIO from the Go module proxy)", bin)
	}
	var s *Server
	var err error
	for range 3 {
		if s, err = start(bin, t.TempDir(), env); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(s.Stop)
	s.seed(t)
	return s
}

func start(bin, dir string, env []string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logs := &bytes.Buffer{}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:"+strconv.Itoa(cport), dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+RootUser, "MINIO_ROOT_PASSWORD="+RootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("minio not ready at %s: %v\n%s", s.URL, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills the server.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
	}
}

// S3 returns an S3 client for the server with the given credentials.
func (s *Server) S3(id, secret, token string) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, token),
	})
}

func (s *Server) seed(t testing.TB) {
	ctx := context.Background()
	c := s.S3(RootUser, RootPassword, "")
	// /minio/health/ready can answer before the object layer and IAM are
	// initialised (503 XMinioServerNotInitialized): wait for a real call.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio at %s does not answer S3 calls 30 s after it said ready: %v", s.URL, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, b := range []string{Readable, Other} {
		// The SDK retries a create whose answer was lost (a loaded machine,
		// MinIO still settling); the retry then finds the bucket made.
		var owned *s3types.BucketAlreadyOwnedByYou
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil && !errors.As(err, &owned) {
			t.Fatalf("create bucket %s: %v", b, err)
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(Object),
			Body: strings.NewReader("hello from " + b + "\n")}); err != nil {
			t.Fatalf("put %s/%s: %v", b, Object, err)
		}
	}
}

// ReadOnlyPolicy is a session policy that allows reading Readable only.
const ReadOnlyPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::` + Readable + `","arn:aws:s3:::` + Readable + `/*"]}]}`

func freePort() (int, error) { return testbin.FreePort("127.0.0.1") }
