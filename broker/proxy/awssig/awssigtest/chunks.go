// Package awssigtest signs aws-chunked bodies for tests, written apart from
// awssig's re-signer, straight from the S3 documentation, so the two check
// each other.
package awssigtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// ChunkSigner signs the chunks of one STREAMING-AWS4-HMAC-SHA256-PAYLOAD
// body, each signature chained from the previous one.
type ChunkSigner struct {
	key            []byte
	amzDate, scope string
	prev           string
}

// NewChunkSigner starts the chain of a request signed at amzDate
// (YYYYMMDDTHHMMSSZ) in scope (date/region/service/aws4_request) whose own
// signature, the seed, is seed (hex).
func NewChunkSigner(secret, amzDate, scope, seed string) *ChunkSigner {
	k := []byte("AWS4" + secret)
	for p := range strings.SplitSeq(scope, "/") {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(p))
		k = m.Sum(nil)
	}
	return &ChunkSigner{key: k, amzDate: amzDate, scope: scope, prev: seed}
}

func (c *ChunkSigner) sign(kind, last string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(kind + "\n" + c.amzDate + "\n" + c.scope + "\n" + c.prev + "\n" + last))
	c.prev = hex.EncodeToString(m.Sum(nil))
	return c.prev
}

// Body encodes data as aws-chunked in chunks of n bytes, each signed, and
// with trailers ("name:value") signed after the final chunk
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER) when there are any.
func (c *ChunkSigner) Body(data []byte, n int, trailers ...string) []byte {
	empty := sha256.Sum256(nil)
	var b bytes.Buffer
	for off := 0; ; off += n {
		chunk := data[min(off, len(data)):min(off+n, len(data))]
		sum := sha256.Sum256(chunk)
		sig := c.sign("AWS4-HMAC-SHA256-PAYLOAD", hex.EncodeToString(empty[:])+"\n"+hex.EncodeToString(sum[:]))
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", len(chunk), sig)
		b.Write(chunk)
		if len(chunk) == 0 {
			break
		}
		b.WriteString("\r\n")
	}
	if len(trailers) > 0 {
		var canon string
		for _, tr := range trailers {
			b.WriteString(tr + "\r\n")
			canon += tr + "\n"
		}
		sum := sha256.Sum256([]byte(canon))
		b.WriteString("x-amz-trailer-signature:" + c.sign("AWS4-HMAC-SHA256-TRAILER", hex.EncodeToString(sum[:])) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// EncodedLength is the length of Body(data, n, trailers...), which does not
// depend on the signatures: a request's Content-Length before signing.
func EncodedLength(data []byte, n int, trailers ...string) int {
	return len(NewChunkSigner("", "", "x/x/x/x", "").Body(data, n, trailers...))
}
