// Package miniotest starts a real MinIO server on 127.0.0.1 for tests: an
// S3 server whose STS AssumeRole answers aws-sdk-go-v2, enforces session
// policies on S3 calls and revokes tokens through its admin API.
package miniotest

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/credbroker/credbroker/internal/syncbuf"
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
	URL    string
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer
	exited chan struct{} // closed once the process is gone
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
	// A start can lose its ports to another server started at the same
	// time (between freePort and MinIO's bind); it is then tried again on
	// new ports, seeding included.
	var s *Server
	var err error
	for range 3 {
		if s, err = start(bin, t.TempDir(), env); err != nil {
			continue
		}
		if err = s.seed(); err == nil {
			break
		}
		s.Stop()
	}
	if err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(s.Stop)
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
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:"+strconv.Itoa(cport), dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+RootUser, "MINIO_ROOT_PASSWORD="+RootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, logs: logs, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	// Ready means a real S3 call succeeds: /minio/health/ready can answer
	// before the object layer and IAM are initialised. A process that
	// exits (its port taken between freePort and its bind, by a server
	// another test started) is a failed start, retried on new ports.
	c := s.S3(RootUser, RootPassword, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.ListBuckets(context.Background(), &s3.ListBucketsInput{})
		if err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("minio at %s exited before it was ready: %s", s.URL, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("minio at %s does not answer S3 calls after 30 s: %v\n%s", s.URL, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills the server.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
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

func (s *Server) seed() error {
	ctx := context.Background()
	c := s.S3(RootUser, RootPassword, "")
	for _, b := range []string{Readable, Other} {
		// The SDK retries a create whose answer was lost (a loaded machine,
		// MinIO still settling); the retry then finds the bucket made.
		var owned *s3types.BucketAlreadyOwnedByYou
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil && !errors.As(err, &owned) {
			return fmt.Errorf("minio at %s: create bucket %s: %w\n%s", s.URL, b, err, s.logs.String())
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(Object),
			Body: strings.NewReader("hello from " + b + "\n")}); err != nil {
			return fmt.Errorf("minio at %s: put %s/%s: %w\n%s", s.URL, b, Object, err, s.logs.String())
		}
	}
	return nil
}

// ReadOnlyPolicy is a session policy that allows reading Readable only.
const ReadOnlyPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::` + Readable + `","arn:aws:s3:::` + Readable + `/*"]}]}`

func freePort() (int, error) { return testbin.FreePort("127.0.0.1") }
