package awssig

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Resigner checks that a request was signed with the placeholder
// credentials and re-signs it with the real ones. It is safe for
// concurrent use.
type Resigner struct {
	// Placeholder are the credentials the sandbox holds.
	Placeholder Creds
	// Real returns the current real credentials (they change on renewal).
	Real func() Creds
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxSkew is how far the agent's X-Amz-Date may be from Now; zero
	// means DefaultMaxSkew (5 minutes, as AWS).
	MaxSkew time.Duration
}

// Headers of the agent's signature, replaced on re-signing.
const (
	hdrAuthorization = "Authorization"
	hdrDate          = "X-Amz-Date"
	hdrToken         = "X-Amz-Security-Token"
)

// Resign verifies r's SigV4 signature (Authorization header form) against
// Placeholder, then re-signs r in place with Real() at Now: Authorization
// and X-Amz-Date are replaced, X-Amz-Security-Token is replaced by the real
// one or removed, the headers the agent signed stay signed (and only those,
// plus content-length), and the payload hash mode the client chose is kept.
// A signed aws-chunked body is wrapped so that every chunk is verified and
// re-signed as it is read; a bad chunk fails that read with a
// *RefusedError. Every other refusal is a *RefusedError returned here, and
// r is then unchanged except for a hashed body, which is restored.
//
// The caller decides where r may go: Resign signs for whatever Host,
// region and service the agent signed, so route only to hosts the
// session's AWS credentials are bound to, and call Resign after the last
// change to r's headers, path, query and Host.
func (s *Resigner) Resign(r *http.Request) error {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now().UTC()
	v, err := verify(r, s.Placeholder, t, s.MaxSkew)
	if err != nil {
		return err
	}
	rc := s.Real()
	if rc.AccessKeyID == "" || rc.Secret.IsZero() {
		return errors.New("aws sigv4: re-sign: no real credentials")
	}
	a := v.auth
	if err := sign(r, a, v.payloadHash, rc, t); err != nil {
		return err
	}
	if v.payloadHash == StreamingSigned || v.payloadHash == StreamingSignedTrailer {
		return wrapChunked(r, v, rc, t)
	}
	return nil
}

// sign signs r with c over the headers a lists (the SDK signs every header
// it is given, so the others are set aside while it runs).
func sign(r *http.Request, a *authorization, payloadHash string, c Creds, t time.Time) error {
	r.Header.Del(hdrAuthorization)
	r.Header.Del(hdrDate)
	r.Header.Del(hdrToken)
	unsigned := http.Header{}
	for k, vs := range r.Header {
		if !a.signs(strings.ToLower(k)) {
			unsigned[k] = vs
			delete(r.Header, k)
		}
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = isS3(a.service) })
	creds := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.Secret.Reveal(), SessionToken: c.SessionToken.Reveal()}
	err := signer.SignHTTP(context.Background(), creds, r, payloadHash, a.service, a.region, t)
	for k, vs := range unsigned {
		r.Header[k] = vs
	}
	if err != nil {
		return errors.New("aws sigv4: re-sign with the real credentials failed")
	}
	return nil
}

func wrapChunked(r *http.Request, v *verified, rc Creds, t time.Time) error {
	na, err := parseAuthorization(r.Header.Get(hdrAuthorization))
	if err != nil {
		return errors.New("aws sigv4: re-sign: the signer's own Authorization header does not parse")
	}
	seed, _ := hex.DecodeString(na.signature) // checked as 64 hex digits
	from := chain{key: v.key, amzDate: v.amzDate, scope: v.auth.scope(), prev: v.signature}
	to := chain{key: signingKey(rc.Secret.Bytes(), na.date, na.region, na.service),
		amzDate: t.Format(amzDateFormat), scope: na.scope(), prev: seed}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.Body = newChunkRewriter(r.Body, from, to, v.payloadHash == StreamingSignedTrailer)
	r.GetBody = nil // the body streams once
	return nil
}
