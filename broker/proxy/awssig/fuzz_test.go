package awssig

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Untrusted input from the sandbox: the Authorization header.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=ASIAX/20261207/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("a", 64))
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e,SignedHeaders=host,Signature=0")
	f.Add("AWS4-ECDSA-P256-SHA256 Credential=x")
	f.Add("AWS AKIA:sig")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := parseAuthorization(h)
		if err != nil {
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("error %v is not a RefusedError with a reason", err)
			}
			return
		}
		if !a.signs("host") || len(a.signature) != 64 || len(a.date) != 8 || a.keyID == "" {
			t.Fatalf("accepted an Authorization header without its required parts: %+v", a)
		}
	})
}

// Untrusted input from the sandbox: an aws-chunked body.
func FuzzChunkRewriter(f *testing.F) {
	seed := make([]byte, 32)
	chunks := newTestChunks(placeholder.Secret.Reveal(), "20261207T060000Z", "20261207/us-east-1/s3/aws4_request", strings.Repeat("00", 32))
	f.Add(chunks.Body([]byte("hello world"), 4), false)
	chunks = newTestChunks(placeholder.Secret.Reveal(), "20261207T060000Z", "20261207/us-east-1/s3/aws4_request", strings.Repeat("00", 32))
	f.Add(chunks.Body([]byte("hello"), 8, "x-amz-checksum-crc32:AAAAAA=="), true)
	f.Add([]byte("0;chunk-signature="+strings.Repeat("0", 64)+"\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, trailer bool) {
		key := signingKey(placeholder.Secret.Bytes(), "20261207", "us-east-1", "s3")
		from := chain{key: key, amzDate: "20261207T060000Z", scope: "20261207/us-east-1/s3/aws4_request", prev: seed}
		to := from
		to.key = signingKey(realCreds.Secret.Bytes(), "20261207", "us-east-1", "s3")
		w := newChunkRewriter(io.NopCloser(bytes.NewReader(body)), from, to, trailer)
		out, err := io.ReadAll(w)
		if err == nil && len(out) != len(body) {
			t.Fatalf("re-signed body is %d bytes, input %d", len(out), len(body))
		}
		if err != nil {
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a RefusedError", err)
			}
			assertSecretFree(t, err)
		}
	})
}

// Untrusted input from the sandbox: a whole request.
func FuzzResign(f *testing.F) {
	r := sdkSigned(f, reqSpec{method: "PUT", url: "http://127.0.0.1:9000/b/k?x=1", service: "s3", body: "hi",
		payload: UnsignedPayload}, placeholder, testNow)
	var buf bytes.Buffer
	_ = r.Write(&buf)
	f.Add(buf.Bytes())
	buf.Reset()
	r = sdkSigned(f, reqSpec{method: "POST", url: "http://sts.amazonaws.com/", service: "sts", body: "Action=GetCallerIdentity"}, placeholder, testNow)
	_ = r.Write(&buf)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		err = newResigner().Resign(r)
		if err != nil {
			assertSecretFree(t, err)
			return
		}
		_, err = io.Copy(io.Discard, r.Body)
		if err != nil {
			assertSecretFree(t, err)
		}
	})
}
