package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Renew requests a new token for the session's ServiceAccount and returns
// it as the new kube/token (the broker replaces the file atomically;
// client-go re-reads it about once a minute and after a 401, so the agent
// needs no restart). The previous token stays valid until
// its own expiry or the session's revocation, whichever comes first.
func (p *Provider) Renew(ctx context.Context, s providers.Session, l leases.Lease, _ providers.FileReader) (providers.Grant, error) {
	if l.Kind != KindServiceAccount || !s.ExpiresAt.After(p.now()) {
		return providers.Grant{}, providers.ErrNotRenewable
	}
	ns, name := l.Data[dataNamespace], l.Data[dataName]
	if ns == "" || name == "" || l.Data[dataTokenTTL] == "" {
		// A lease found after a crash (FindOrphans) only knows what to
		// delete.
		return providers.Grant{}, providers.ErrNotRenewable
	}
	roleCap := time.Hour
	if n, err := strconv.ParseInt(l.Data[dataTokenTTL], 10, 64); err == nil && n > 0 {
		roleCap = time.Duration(n) * time.Second
	}
	var audiences []string
	if a := l.Data[dataAudiences]; a != "" {
		audiences = strings.Split(a, ",")
	}
	tok, exp, err := p.requestToken(ctx, s, ns, name, audiences, roleCap)
	if err != nil {
		return providers.Grant{}, fmt.Errorf("kube: renew %s: %w", l.ID, err)
	}
	nl := l
	nl.IssuedAt = p.now() // a fresh token: the refresher's two-thirds point restarts
	nl.ExpiresAt = exp
	p.log.Info("renewed service account token", "session", s.ID, "lease", l.ID, "expires", exp)
	return providers.Grant{
		Leases:     []leases.Lease{nl},
		Files:      map[string]secret.Value{TokenFile: tok},
		Secrets:    []providers.IssuedSecret{{Value: tok, What: "kube service account token", Expires: exp, Name: providers.SecretKubeToken}},
		UpstreamCA: p.cluster.CAData,
	}, nil
}
