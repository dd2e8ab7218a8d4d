package awssts

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/credbroker/credbroker/internal/hostsdial"
	"github.com/credbroker/credbroker/leases"
)

// minioRevoker uses MinIO's own STS token revocation: every AssumeRole
// carries TokenRevokeType=<session id>, and the admin API's revoke-tokens
// revokes the caller's tokens of one type (a session) or all of them.
type minioRevoker struct {
	// user, when set, is the parent user whose tokens are revoked (needs
	// admin rights); empty means the broker's own access key.
	user     string
	endpoint string
	region   string
	creds    aws.CredentialsProvider
	hc       *http.Client
}

// emptySHA256 is the payload hash of an empty body.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

func (m *minioRevoker) assumeOptions(sessionID string) []func(*sts.Options) {
	return []func(*sts.Options){func(o *sts.Options) {
		o.APIOptions = append(o.APIOptions, addFormParam("TokenRevokeType", sessionID))
	}}
}

func (m *minioRevoker) revokeSession(ctx context.Context, sessionID, _ string, _ time.Time) error {
	return m.revoke(ctx, url.Values{"tokenRevokeType": {sessionID}})
}

// dataParent is the lease data key naming the parent user of a session's
// MinIO token: the user whose tokens revoke-tokens revokes.
const dataParent = "parent"

// revokeAll revokes every token whose parent is the broker's identity. A
// lease is covered when it was minted under that parent; a lease minted by
// another broker with its own access key (a fleet whose configs differ) is
// not, and is left to that broker.
func (m *minioRevoker) revokeAll(ctx context.Context, ls []leases.Lease) ([]string, error) {
	if err := m.revoke(ctx, url.Values{"fullRevoke": {"true"}}); err != nil {
		return nil, err
	}
	parent := m.parent(ctx)
	var covered []string
	for _, l := range ls {
		if parent != "" && l.Data[dataParent] == parent {
			covered = append(covered, l.ID)
		}
	}
	return covered, nil
}

func (m *minioRevoker) leaseData(ctx context.Context) map[string]string {
	if p := m.parent(ctx); p != "" {
		return map[string]string{dataParent: p}
	}
	return nil
}

// parent is the user whose tokens the broker's revoke-tokens calls reach:
// the configured user, else the broker's own access key id (an
// identifier, not a secret).
func (m *minioRevoker) parent(ctx context.Context) string {
	if m.user != "" {
		return m.user
	}
	c, err := m.creds.Retrieve(ctx)
	if err != nil {
		return ""
	}
	return c.AccessKeyID
}

func (m *minioRevoker) mintableFrom(string) time.Time { return time.Time{} }

// revoke calls POST /minio/admin/v3/revoke-tokens/builtin as the broker
// itself (no user parameter): MinIO then revokes STS tokens whose parent is
// the broker's own access key, which needs no admin privilege.
func (m *minioRevoker) revoke(ctx context.Context, q url.Values) error {
	if m.user != "" {
		q.Set("user", m.user)
	}
	u := strings.TrimSuffix(m.endpoint, "/") + "/minio/admin/v3/revoke-tokens/builtin?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	creds, err := m.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("broker credentials: %w", err)
	}
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySHA256, "s3", m.region, time.Now()); err != nil {
		return fmt.Errorf("sign revoke-tokens: %w", err)
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("minio revoke-tokens: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("minio revoke-tokens answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// addFormParam appends k=v to the form-encoded AssumeRole body: MinIO's
// TokenRevokeType is not part of the AWS API model.
func addFormParam(k, v string) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Serialize.Add(middleware.SerializeMiddlewareFunc("credbroker-"+k,
			func(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (middleware.SerializeOutput, middleware.Metadata, error) {
				req, ok := in.Request.(*smithyhttp.Request)
				if !ok {
					return next.HandleSerialize(ctx, in)
				}
				var body []byte
				if st := req.GetStream(); st != nil {
					b, err := io.ReadAll(st)
					if err != nil {
						return middleware.SerializeOutput{}, middleware.Metadata{}, err
					}
					body = b
				}
				body = append(body, "&"+url.Values{k: {v}}.Encode()...)
				nr, err := req.SetStream(strings.NewReader(string(body)))
				if err != nil {
					return middleware.SerializeOutput{}, middleware.Metadata{}, err
				}
				in.Request = nr
				return next.HandleSerialize(ctx, in)
			}), middleware.After)
	}
}

// minioOpenIDParent is the parent user MinIO records for credentials from
// AssumeRoleWithWebIdentity: base64url(sha256("openid:<sub>:<iss>")).
func minioOpenIDParent(sub, iss string) string {
	h := sha256.Sum256([]byte("openid:" + sub + ":" + strings.TrimSuffix(iss, "/")))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func httpClient(ac aws.Config, dial hostsdial.DialFunc) *http.Client {
	if dial != nil {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dial}}
	}
	if hc, ok := ac.HTTPClient.(*http.Client); ok && hc != nil {
		return hc
	}
	return &http.Client{Timeout: 30 * time.Second}
}
