package awssig

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkResign is the work the gateway adds to one S3 GET: verify the
// placeholder signature and re-sign with the real credentials (headers
// only, UNSIGNED-PAYLOAD).
func BenchmarkResign(b *testing.B) {
	in := overWire(b, sdkSigned(b, reqSpec{method: "GET", url: "https://s3.us-east-1.amazonaws.com/bucket/some/key.txt?versionId=3",
		service: "s3", payload: UnsignedPayload, header: map[string]string{"Range": "bytes=0-1023"}}, placeholder, testNow))
	s := newResigner()
	b.ReportAllocs()
	for b.Loop() {
		r := in.Clone(b.Context())
		if err := s.Resign(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkRewriter is the throughput of re-signing a signed
// aws-chunked upload (64 KiB chunks): verify and re-sign every chunk.
func BenchmarkChunkRewriter(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16) // 4 MiB
	seed := make([]byte, 32)
	amzDate, scope := "20261207T060000Z", "20261207/us-east-1/s3/aws4_request"
	body := newTestChunks(placeholder.Secret.Reveal(), amzDate, scope, "0000000000000000000000000000000000000000000000000000000000000000").Body(data, 64<<10)
	from := chain{key: signingKey(placeholder.Secret.Bytes(), "20261207", "us-east-1", "s3"), amzDate: amzDate, scope: scope, prev: seed}
	to := chain{key: signingKey(realCreds.Secret.Bytes(), "20261207", "us-east-1", "s3"), amzDate: amzDate, scope: scope, prev: seed}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		w := newChunkRewriter(io.NopCloser(bytes.NewReader(body)), from, to, false)
		if _, err := io.Copy(io.Discard, w); err != nil {
			b.Fatal(err)
		}
	}
}
