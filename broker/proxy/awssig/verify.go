package awssig

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
)

// Creds are one AWS credential set.
type Creds struct {
	AccessKeyID  string
	Secret       secret.Value
	SessionToken secret.Value // zero for long-term keys
}

// Payload hash values of X-Amz-Content-Sha256 other than a SHA-256 hex.
const (
	UnsignedPayload          = "UNSIGNED-PAYLOAD"
	StreamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	StreamingSigned          = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	StreamingSignedTrailer   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
)

const (
	amzDateFormat = "20060102T150405Z"
	// MaxBody bounds the body read to hash it (services other than S3
	// sign the body's hash; S3 clients send the hash in a header).
	MaxBody = 64 << 20
	// DefaultMaxSkew is how far X-Amz-Date may be from now, as AWS allows.
	DefaultMaxSkew = 5 * time.Minute
)

// verified is what a verified request was signed with.
type verified struct {
	auth        *authorization
	amzDate     string
	payloadHash string
	signature   []byte // the seed of a streaming body's chunk chain
	key         []byte // the signing key of the scope
}

// Verify checks that r carries a SigV4 Authorization header made with c,
// dated within maxSkew of now, whose signature matches r. A body that must
// be hashed is read and restored. Every refusal is a *RefusedError.
func Verify(r *http.Request, c Creds, now time.Time, maxSkew time.Duration) error {
	_, err := verify(r, c, now, maxSkew)
	return err
}

func verify(r *http.Request, c Creds, now time.Time, maxSkew time.Duration) (*verified, error) {
	if isPresigned(r) {
		return nil, refuse(CodeAccessDenied, "presigned URLs made in the sandbox are not re-signed: "+
			"a presigned URL is meant to be used outside the session's gateway, where it would need the real credentials; "+
			"presign outside the sandbox or make the request directly")
	}
	auth := r.Header.Values("Authorization")
	if len(auth) != 1 {
		return nil, refuse(CodeAccessDenied, "the request has no single SigV4 Authorization header; configure the AWS client with the session's credentials")
	}
	a, err := parseAuthorization(auth[0])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(a.keyID), []byte(c.AccessKeyID)) != 1 {
		return nil, refuse(CodeInvalidAccessKeyID, "the request is not signed with this session's access key id; use the credentials of the session's environment")
	}
	if err := checkToken(r, a, c.SessionToken); err != nil {
		return nil, err
	}
	amzDate, err := checkDate(r, a, now, maxSkew)
	if err != nil {
		return nil, err
	}
	hash, err := payloadHash(r, a)
	if err != nil {
		return nil, err
	}
	canon, err := canonicalRequest(r, a, hash)
	if err != nil {
		return nil, err
	}
	key := signingKey(c.Secret.Bytes(), a.date, a.region, a.service)
	want := hmacSHA256(key, []byte(stringToSign(amzDate, a.scope(), canon)))
	got, _ := hex.DecodeString(a.signature) // checked as 64 hex digits
	if subtle.ConstantTimeCompare(want, got) != 1 {
		return nil, refuse(CodeSignatureDoesNotMatch, "the signature does not match the request (wrong secret key, or the request was changed after signing)")
	}
	return &verified{auth: a, amzDate: amzDate, payloadHash: hash, signature: got, key: key}, nil
}

func isPresigned(r *http.Request) bool {
	for k := range r.URL.Query() {
		switch strings.ToLower(k) {
		case "x-amz-signature", "x-amz-credential", "x-amz-algorithm":
			return true
		}
	}
	return false
}

func checkToken(r *http.Request, a *authorization, want secret.Value) error {
	got := r.Header.Values("X-Amz-Security-Token")
	switch {
	case want.IsZero() && len(got) == 0:
		return nil
	case want.IsZero():
		return refuse(CodeInvalidToken, "the request carries a session token this session does not have; unset AWS_SESSION_TOKEN")
	case len(got) != 1:
		return refuse(CodeInvalidToken, "the request carries no single X-Amz-Security-Token; set AWS_SESSION_TOKEN from the session's environment")
	case subtle.ConstantTimeCompare([]byte(got[0]), want.Bytes()) != 1:
		return refuse(CodeInvalidToken, "the request's session token is not this session's")
	case !a.signs("x-amz-security-token"):
		return refuse(CodeAccessDenied, "the request's X-Amz-Security-Token is not among its SignedHeaders")
	}
	return nil
}

func checkDate(r *http.Request, a *authorization, now time.Time, maxSkew time.Duration) (string, error) {
	v := r.Header.Values("X-Amz-Date")
	if len(v) != 1 || !a.signs("x-amz-date") {
		return "", refuse(CodeAccessDenied, "the request has no single signed X-Amz-Date header")
	}
	t, err := time.Parse(amzDateFormat, v[0])
	if err != nil || v[0][:8] != a.date {
		return "", refuse(CodeInvalidRequest, "X-Amz-Date is not YYYYMMDDTHHMMSSZ of the credential scope's date")
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return "", refuse(CodeRequestTimeTooSkewed, "X-Amz-Date is more than "+maxSkew.String()+" from the gateway's clock; fix the sandbox's clock")
	}
	return v[0], nil
}

// payloadHash is the payload hash of the canonical request: for S3 the
// client's X-Amz-Content-Sha256 claim (S3 checks the body against it or
// the chunk signatures carry it), else the body's SHA-256.
func payloadHash(r *http.Request, a *authorization) (string, error) {
	v := r.Header.Values("X-Amz-Content-Sha256")
	if !isS3(a.service) || len(v) == 0 {
		// An S3 client that sends no X-Amz-Content-Sha256 (curl
		// --aws-sigv4) signed the body's hash, as for any service.
		return hashBody(r)
	}
	if len(v) != 1 || !a.signs("x-amz-content-sha256") {
		return "", refuse(CodeInvalidRequest, "an S3 request's X-Amz-Content-Sha256 must be one header, among its SignedHeaders")
	}
	switch h := v[0]; {
	case len(h) == 64 && allIn(h, isLowerHex):
		return h, nil
	case h == UnsignedPayload, h == StreamingUnsignedTrailer, h == StreamingSigned, h == StreamingSignedTrailer:
		return h, nil
	case strings.HasPrefix(h, "STREAMING-AWS4-ECDSA"):
		return "", refuse(CodeInvalidRequest, "SigV4a streaming payloads are not supported through the credential proxy")
	default:
		return "", refuse(CodeInvalidRequest, "X-Amz-Content-Sha256 is neither a SHA-256 hex nor a payload mode S3 knows")
	}
}

func hashBody(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return sha256Hex(nil), nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	_ = r.Body.Close()
	if err != nil {
		return "", refuse(CodeInvalidRequest, "read the request body: "+err.Error())
	}
	if len(b) > MaxBody {
		return "", refuse(CodeInvalidRequest, "the request body is over 64 MiB; only S3 may send larger bodies through the credential proxy")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return sha256Hex(b), nil
}
