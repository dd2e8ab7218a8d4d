package awssig

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/credbroker/credbroker/broker/proxy/awssig/awssigtest"
	"github.com/credbroker/credbroker/internal/secret"
)

// Test credentials: the sandbox's placeholders and the real ones.
var (
	placeholder = Creds{AccessKeyID: "ASIAPLACEHOLDER00001", Secret: secret.New("placeholder-secret/abc+def"),
		SessionToken: secret.New("placeholder-token-FwoGZXIvYXdzEJr")}
	realCreds = Creds{AccessKeyID: "ASIAREALKEY000000001", Secret: secret.New("real-secret/xyz+123"),
		SessionToken: secret.New("real-token-IQoJb3JpZ2luX2VjEPz")}
	testNow = time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
)

// secretsOf are the values that must never be printed.
func secretsOf() []string {
	return []string{placeholder.Secret.Reveal(), placeholder.SessionToken.Reveal(),
		realCreds.Secret.Reveal(), realCreds.SessionToken.Reveal()}
}

func sdkCreds(c Creds) aws.Credentials {
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.Secret.Reveal(), SessionToken: c.SessionToken.Reveal()}
}

// reqSpec describes a request a client signs with aws-sdk-go-v2's signer.
type reqSpec struct {
	method, url, service string
	body                 string
	header               map[string]string
	payload              string // X-Amz-Content-Sha256 for S3: "" = hex of body
	noSHAHeader          bool   // an S3 client that sends none (curl)
}

// sdkSigned builds the request and signs it as an AWS SDK would.
func sdkSigned(t testing.TB, s reqSpec, c Creds, at time.Time) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(context.Background(), s.method, s.url, strings.NewReader(s.body))
	if err != nil {
		t.Fatal(err)
	}
	if s.body == "" {
		r.Body, r.ContentLength = http.NoBody, 0
	}
	for k, v := range s.header {
		r.Header.Set(k, v)
	}
	hash := s.payload
	if hash == "" {
		sum := sha256.Sum256([]byte(s.body))
		hash = hex.EncodeToString(sum[:])
	}
	if s.service == "s3" && !s.noSHAHeader {
		r.Header.Set("X-Amz-Content-Sha256", hash)
	}
	if err := sdkSigner(s.service == "s3").SignHTTP(context.Background(), sdkCreds(c), r, hash, s.service, "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	return r
}

// sdkSigner is aws-sdk-go-v2's signer as its S3 client (s3) or any other
// client sets it up.
func sdkSigner(s3 bool) *v4.Signer {
	return v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = s3 })
}

// overWire sends r through HTTP/1.1 framing and reads it back as a server
// does, so the tests see what a gateway sees.
func overWire(t testing.TB, r *http.Request) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatalf("write request: %v", err)
	}
	got, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatalf("read request: %v", err)
	}
	return got
}

// assertSecretFree fails if err's text holds a secret value.
func assertSecretFree(t *testing.T, err error) {
	t.Helper()
	for _, s := range secretsOf() {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error text holds a secret value: %q", err.Error())
		}
	}
}

// newTestChunks is the independent chunk signer of awssigtest.
func newTestChunks(secret, amzDate, scope, seed string) *awssigtest.ChunkSigner {
	return awssigtest.NewChunkSigner(secret, amzDate, scope, seed)
}

// authField returns a field (Signature, Credential) of r's Authorization.
func authField(t *testing.T, r *http.Request, field string) string {
	t.Helper()
	for p := range strings.SplitSeq(strings.TrimPrefix(r.Header.Get("Authorization"), algorithm+" "), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == field {
			return v
		}
	}
	t.Fatalf("no %s in Authorization", field)
	return ""
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}
