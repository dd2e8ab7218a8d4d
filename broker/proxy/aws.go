package proxy

import (
	"errors"
	"net/http"
	"strings"

	"github.com/credbroker/credbroker/broker/proxy/awssig"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// resignAWS checks a request for a bound AWS endpoint against the
// placeholder credentials and re-signs it with the real ones. A request
// signed with other credentials (the agent's own) or not signed at all
// passes as it is: the placeholder credentials are the only ones the
// gateway vouches for.
func (s *Session) resignAWS(r *http.Request, vals map[string]value) error {
	id, ok := vals[providers.SecretAWSAccessKeyID]
	if !ok {
		return nil
	}
	if !signedWith(r, id.placeholder) {
		return nil
	}
	ph := awssig.Creds{AccessKeyID: id.placeholder,
		Secret:       secret.New(vals[providers.SecretAWSSecretKey].placeholder),
		SessionToken: secret.New(vals[providers.SecretAWSSessionToken].placeholder)}
	real := awssig.Creds{AccessKeyID: id.real.Reveal(),
		Secret:       vals[providers.SecretAWSSecretKey].real,
		SessionToken: vals[providers.SecretAWSSessionToken].real}
	rs := awssig.Resigner{Placeholder: ph, Real: func() awssig.Creds { return real }}
	if err := rs.Resign(r); err != nil {
		var re *awssig.RefusedError
		if errors.As(err, &re) {
			return &refusal{msg: re.Error()}
		}
		return &refusal{msg: "aws sigv4: " + err.Error()}
	}
	return nil
}

// signedWith reports whether r carries a SigV4 signature (header or
// presigned query) made with access key id.
func signedWith(r *http.Request, id string) bool {
	if strings.Contains(r.Header.Get("Authorization"), "Credential="+id+"/") {
		return true
	}
	return strings.HasPrefix(r.URL.Query().Get("X-Amz-Credential"), id+"/")
}
