package awssts

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/keyfile"
	"github.com/credbroker/credbroker/internal/secret"
)

// Issuer is the broker's own OIDC identity provider for STS web identity:
// it signs one short-lived JWT per session with an RSA key that never
// leaves the host and serves the discovery document and JWKS that STS (or
// MinIO) fetch to verify it.
type Issuer struct {
	cfg configs.AWSWebIdentity
	key *rsa.PrivateKey
	kid string
	srv *http.Server
	now func() time.Time
}

// NewIssuer loads the signing key (creating it with mode 0600 if missing).
func NewIssuer(cfg configs.AWSWebIdentity) (*Issuer, error) {
	key, err := loadOrCreateKey(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("aws: web identity key %s: %w", cfg.KeyFile, err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &Issuer{cfg: cfg, key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:16]), now: time.Now}, nil
}

// loadOrCreateKey reads the signing key (refusing a symlink, a file owned
// by another uid or open to group or others: whoever can read or replace it
// can mint web identities STS trusts), or creates it if missing.
func loadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	b, err := keyfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pem.Encode(f, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}); err != nil {
			return nil, err
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM file")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not an RSA private key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA private key (STS needs RS256)")
	}
	return rk, nil
}

// Token signs the JWT for one session. The session id travels as AWS's
// source identity and session tag claims, so CloudTrail and policies see
// it exactly as with AssumeRole.
func (i *Issuer) Token(sessionID, role string) (secret.Value, error) {
	now := i.now()
	claims := jwt.MapClaims{
		"iss":                                    strings.TrimSuffix(i.cfg.Issuer, "/"),
		"sub":                                    i.cfg.Subject,
		"aud":                                    i.cfg.Audience,
		"iat":                                    now.Unix(),
		"nbf":                                    now.Add(-30 * time.Second).Unix(),
		"exp":                                    now.Add(i.cfg.TokenTTL.D()).Unix(),
		"jti":                                    sessionID + "-" + strings.ToLower(rand.Text()[:8]),
		"https://aws.amazon.com/source_identity": sessionID,
		"https://aws.amazon.com/tags": map[string]any{
			"principal_tags":      map[string][]string{"credbroker:session": {sessionID}, "credbroker:role": {role}},
			"transitive_tag_keys": []string{"credbroker:session", "credbroker:role"},
		},
		"credbroker_session": sessionID,
		"credbroker_role":    role,
	}
	for k, v := range i.cfg.Claims {
		claims[k] = v
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = i.kid
	s, err := t.SignedString(i.key)
	if err != nil {
		return secret.Value{}, fmt.Errorf("aws: sign web identity token: %w", err)
	}
	return secret.New(s), nil
}

// Handler serves /.well-known/openid-configuration and /.well-known/jwks.json.
func (i *Issuer) Handler() http.Handler {
	base := strings.TrimSuffix(i.cfg.Issuer, "/")
	disc, _ := json.Marshal(map[string]any{
		"issuer":                                base,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported":                      []string{"sub", "aud", "iss", "exp", "iat"},
	})
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": i.kid,
		"n": base64.RawURLEncoding.EncodeToString(i.key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(i.key.E)).Bytes()),
	}}})
	mux := http.NewServeMux()
	serve := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(body)
		}
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", serve(disc))
	mux.HandleFunc("GET /.well-known/jwks.json", serve(jwks))
	return mux
}

// Start serves the discovery document and JWKS on cfg.Listen.
func (i *Issuer) Start() error {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", i.cfg.Listen)
	if err != nil {
		return fmt.Errorf("aws: web identity: listen on %s: %w", i.cfg.Listen, err)
	}
	i.srv = &http.Server{Handler: i.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = i.srv.Serve(l) }()
	return nil
}

// Close stops serving.
func (i *Issuer) Close() error {
	if i.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return i.srv.Shutdown(ctx)
}

// PublicKey returns the verification key (tests verify tokens with it).
func (i *Issuer) PublicKey() crypto.PublicKey { return &i.key.PublicKey }
