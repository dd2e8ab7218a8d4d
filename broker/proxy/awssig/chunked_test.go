package awssig

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/credbroker/credbroker/broker/proxy/awssig/awssigtest"
)

// chunkedRequest is an S3 PUT of data with a signed aws-chunked body, as
// SDKs that stream uploads over plain HTTP send it.
func chunkedRequest(t *testing.T, data []byte, chunk int, mode string, trailers []string, at time.Time) *http.Request {
	t.Helper()
	// The encoded length does not depend on the signatures.
	length := awssigtest.EncodedLength(data, chunk, trailers...)
	r, err := http.NewRequestWithContext(context.Background(), "PUT", "http://127.0.0.1:9000/bucket/big.bin", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = int64(length)
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	r.Header.Set("X-Amz-Content-Sha256", mode)
	if len(trailers) > 0 {
		r.Header.Set("X-Amz-Trailer", strings.Split(trailers[0], ":")[0])
	}
	if err := sdkSigner(true).SignHTTP(context.Background(), sdkCreds(placeholder), r, mode, "s3", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	chunks := newTestChunks(placeholder.Secret.Reveal(), at.Format(amzDateFormat), at.Format("20060102")+"/us-east-1/s3/aws4_request", authField(t, r, "Signature"))
	r.Body = io.NopCloser(bytes.NewReader(chunks.Body(data, chunk, trailers...)))
	return overWire(t, r)
}

func TestResignChunked(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef\r\n"), 20000) // 360,000 bytes, CRLFs inside
	cases := []struct {
		name     string
		mode     string
		chunk    int
		trailers []string
	}{
		{"64 KiB chunks", StreamingSigned, 64 << 10, nil},
		{"one chunk", StreamingSigned, len(data), nil},
		{"8 KiB chunks with trailer", StreamingSignedTrailer, 8 << 10, []string{"x-amz-checksum-crc32:q2fBXA=="}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := chunkedRequest(t, data, tc.chunk, tc.mode, tc.trailers, testNow.Add(-time.Minute))
			wantLen := in.ContentLength
			if err := newResigner().Resign(in); err != nil {
				t.Fatalf("Resign: %v", err)
			}
			got := readAll(t, in.Body)
			if int64(len(got)) != wantLen || in.ContentLength != wantLen {
				t.Fatalf("re-signed body is %d bytes (Content-Length %d), want %d", len(got), in.ContentLength, wantLen)
			}
			// What the real chain must produce, by the independent signer.
			want := newTestChunks(realCreds.Secret.Reveal(), testNow.Format(amzDateFormat), testNow.Format("20060102")+"/us-east-1/s3/aws4_request",
				authField(t, in, "Signature")).Body(data, tc.chunk, tc.trailers...)
			if !bytes.Equal(got, want) {
				t.Fatalf("re-signed body differs from the real chain's (first 200 bytes: %q)", got[:min(200, len(got))])
			}
			in.Body = io.NopCloser(bytes.NewReader(got))
			if err := Verify(overWire(t, in), realCreds, testNow, 0); err != nil {
				t.Fatalf("the re-signed headers do not verify with the real credentials: %v", err)
			}
		})
	}
}

func TestResignChunkedRefusesTampering(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 3*1024)
	cases := []struct {
		name     string
		trailers []string
		tamper   func([]byte) []byte
		reason   string
	}{
		{"data of chunk 2", nil, func(b []byte) []byte { b[bytes.Index(b, []byte("\r\n400;"))+80] ^= 1; return b }, "chunk 2: chunk-signature does not match"},
		{"chunk signature", nil, func(b []byte) []byte { b[20] = "10"[min(1, int(b[20]-'0'))]; return b }, "chunk 1: chunk-signature does not match"},
		{"dropped chunk", nil, func(b []byte) []byte {
			i := bytes.Index(b, []byte("\r\n400;")) + 2
			j := bytes.Index(b[i+1:], []byte("\r\n400;")) + i + 3
			return append(b[:i:i], b[j:]...)
		}, "chunk 2: chunk-signature does not match"},
		{"bytes after the end", nil, func(b []byte) []byte { return append(b, "extra"...) }, "data after the final chunk"},
		{"truncated", nil, func(b []byte) []byte { return b[:len(b)/2] }, "ends inside"},
		{"trailer value", []string{"x-amz-checksum-crc32:AAAAAA=="}, func(b []byte) []byte {
			return bytes.Replace(b, []byte("AAAAAA=="), []byte("BBBBBB=="), 1)
		}, "x-amz-trailer-signature does not match"},
		{"huge chunk size", nil, func([]byte) []byte { return []byte("ffffffff;chunk-signature=" + strings.Repeat("0", 64) + "\r\n") }, "larger than 8 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mode := StreamingSigned
			if tc.trailers != nil {
				mode = StreamingSignedTrailer
			}
			in := chunkedRequest(t, data, 1024, mode, tc.trailers, testNow)
			body := tc.tamper(readAll(t, in.Body))
			in.Body = io.NopCloser(bytes.NewReader(body))
			if err := newResigner().Resign(in); err != nil {
				t.Fatalf("Resign refused the headers: %v", err)
			}
			out, err := io.ReadAll(in.Body)
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("reading the body: %v, want a refusal saying %q", err, tc.reason)
			}
			assertSecretFree(t, err)
			if bytes.Contains(out, data[:1024]) && strings.Contains(tc.reason, "chunk 1") {
				t.Fatal("data of the refused chunk was passed on")
			}
		})
	}
}

// A presigned URL made in the sandbox is refused, by name.
func TestResignRefusesPresigned(t *testing.T) {
	r, err := http.NewRequestWithContext(context.Background(), "GET", "http://127.0.0.1:9000/bucket/key", nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), sdkCreds(placeholder), r, UnsignedPayload, "s3", "us-east-1", testNow)
	if err != nil {
		t.Fatal(err)
	}
	in, err := http.NewRequestWithContext(context.Background(), "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = newResigner().Resign(overWire(t, in))
	if err == nil || !strings.Contains(err.Error(), "presigned URLs made in the sandbox are not re-signed") {
		t.Fatalf("Resign of a presigned URL = %v, want the presigned refusal", err)
	}
	assertSecretFree(t, err)
}
