package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Mint creates the session token through the token role, as a child of the
// epoch, then reads the role's secrets with it. On any failure it revokes the
// token (and with it every lease the token created) before returning.
func (p *Provider) Mint(ctx context.Context, s providers.Session, role configs.Role) (providers.Grant, error) {
	if role.Vault == nil {
		return providers.Grant{}, fmt.Errorf("vault: role %s has no vault block", role.Name)
	}
	ttl, err := p.timeLeft(s)
	if err != nil {
		return providers.Grant{}, err
	}
	sec, err := p.createSessionToken(ctx, s, role, ttl)
	if err != nil {
		return providers.Grant{}, err
	}
	if d := time.Duration(sec.Auth.LeaseDuration) * time.Second; d < ttl-time.Second {
		// Not renewable (see createSessionToken): the session loses Vault
		// access at d. Vault capped it: the token role's token_max_ttl or
		// token_explicit_max_ttl, or the token mount's max_lease_ttl.
		p.log.Warn("vault made the session token shorter than the session; raise the token role's token_explicit_max_ttl "+
			"(and the token mount's max_lease_ttl) to at least the roles' max_ttl",
			"session", s.ID, "token_ttl", d, "session_left", ttl)
	}
	if sec.Auth.Orphan {
		// An orphan is not below the epoch: revoke --all would miss it.
		rerr := p.revokeAccessor(ctx, sec.Auth.Accessor)
		return providers.Grant{}, errors.Join(fmt.Errorf("vault: token role %s creates orphan tokens, which revoke --all cannot reach; "+
			"set orphan=false on it (vault write auth/token/roles/%s orphan=false)", p.cfg.TokenRole, p.cfg.TokenRole), rerr)
	}
	tok := secret.New(sec.Auth.ClientToken)
	now := p.now()
	tokLease := leases.Lease{
		ID:         leaseID(KindToken, sec.Auth.Accessor),
		SessionID:  s.ID,
		Provider:   Name,
		Kind:       KindToken,
		ExternalID: sec.Auth.Accessor,
		IssuedAt:   now,
		ExpiresAt:  now.Add(time.Duration(sec.Auth.LeaseDuration) * time.Second),
		Renewable:  sec.Auth.Renewable,
		State:      leases.LeaseActive,
	}
	g := providers.Grant{
		Leases:  []leases.Lease{tokLease},
		Secrets: []providers.IssuedSecret{{Value: tok, What: "vault token", Expires: tokLease.ExpiresAt, Name: providers.SecretVaultToken}},
		Files:   map[string]secret.Value{TokenFile: tok},
		Env: map[string]secret.Value{
			"VAULT_ADDR":  secret.New(p.cfg.Address),
			"VAULT_TOKEN": tok,
		},
	}
	if p.cfg.Namespace != "" {
		g.Env["VAULT_NAMESPACE"] = secret.New(p.cfg.Namespace)
	}
	if p.caPEM != nil {
		g.UpstreamCA = p.caPEM
		g.Files[caFile] = secret.FromBytes(p.caPEM)
		g.Env["VAULT_CACERT"] = secret.New("${CREDBROKER_SESSION_DIR}/" + caFile)
	}

	sc, err := p.client.Clone()
	if err == nil {
		sc.SetToken(tok.Reveal())
		err = p.readSecrets(ctx, sc, s, role.Vault.Secrets, &g)
	}
	if err == nil {
		err = p.readInject(ctx, sc, s, role.Inject, &g)
	}
	if err != nil {
		if rerr := p.revokeAccessor(ctx, tokLease.ExternalID); rerr != nil {
			// The caller revokes every lease in the failed grant again and
			// keeps it pending; say so instead of hiding it.
			return g, errors.Join(err, fmt.Errorf("vault: revoke token after failed mint: %w", rerr))
		}
		return providers.Grant{}, err
	}
	return g, nil
}

// timeLeft is the life of a session token: the time to the session's end
// in whole seconds (Vault's unit), less one second for the time between
// now and Vault registering the token, so that it never ends after the
// session (it ends one to two seconds before).
func (p *Provider) timeLeft(s providers.Session) (time.Duration, error) {
	left := s.ExpiresAt.Sub(p.now())
	if s.ExpiresAt.IsZero() {
		left = s.TTL
	}
	left = (left - time.Second).Truncate(time.Second)
	if left < time.Second {
		return 0, fmt.Errorf("vault: session %s ends before a token could be created for it", s.ID)
	}
	return left, nil
}

// createSessionToken creates the session token through the token role as a
// child of the epoch. If the epoch was revoked behind the broker's back
// (403), it starts a new epoch and tries once more.
//
// The token ends at the session's end and cannot be renewed, by anyone:
// Vault renews a token made through a token role up to the role's
// token_explicit_max_ttl and ignores the token's own explicit_max_ttl
// (vault/token_store.go authRenew, v1.21), so a renewable session token
// could be renewed from inside the session to the role's cap (12h in the
// docs). explicit_max_ttl still caps the token's first TTL, as a token
// role with a token_period would otherwise set it to the period. Its
// children and the leases read with it are revoked by Vault when it expires.
func (p *Provider) createSessionToken(ctx context.Context, s providers.Session, role configs.Role, ttl time.Duration) (*api.Secret, error) {
	renewable := false
	req := &api.TokenCreateRequest{
		Policies:       role.Vault.Policies,
		TTL:            ttl.String(),
		ExplicitMaxTTL: ttl.String(),
		DisplayName:    "credbroker-" + s.ID,
		Metadata:       map[string]string{metaSession: s.ID, metaRole: role.Name},
		Renewable:      &renewable,
	}
	var sec *api.Secret
	for attempt := 0; ; attempt++ {
		ec, err := p.epochClient(ctx, ttl)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		sec, err = ec.Auth().Token().CreateWithRoleWithContext(ctx, req, p.cfg.TokenRole)
		if err != nil && attempt == 0 && isStatus(err, 403) && p.dropEpoch(ec.Token()) {
			p.log.Warn("the epoch token was rejected (revoked outside credbroker?); starting a new epoch")
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("vault: create session token via role %s: %w", p.cfg.TokenRole, describe(err))
		}
		break
	}
	if sec == nil || sec.Auth == nil {
		return nil, errors.New("vault: create session token: empty answer")
	}
	return sec, nil
}

// secretFile is what vault/secrets/<name>.json holds: Vault's answer with
// its lease fields, so tools can tell how long the secret lives.
type secretFile struct {
	Path          string         `json:"path"`
	LeaseID       string         `json:"lease_id,omitempty"`
	LeaseDuration int            `json:"lease_duration,omitempty"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
}

func (p *Provider) readSecrets(ctx context.Context, c *api.Client, s providers.Session, specs []configs.VaultSecret, g *providers.Grant) error {
	for _, spec := range specs {
		var sec *api.Secret
		var err error
		if spec.Method == "write" {
			sec, err = c.Logical().WriteWithContext(ctx, spec.Path, spec.Data)
		} else {
			sec, err = c.Logical().ReadWithContext(ctx, spec.Path)
		}
		if err != nil {
			return fmt.Errorf("vault: secret %s (%s %s): %w", spec.Name, spec.Method, spec.Path, describe(err))
		}
		if sec == nil || sec.Data == nil {
			return fmt.Errorf("vault: secret %s: nothing at %s; check the path (KV v2 paths look like <mount>/data/<name>)", spec.Name, spec.Path)
		}
		body, err := json.MarshalIndent(secretFile{
			Path: spec.Path, LeaseID: sec.LeaseID, LeaseDuration: sec.LeaseDuration,
			Renewable: sec.Renewable, Data: sec.Data,
		}, "", "  ")
		if err != nil {
			return fmt.Errorf("vault: secret %s: encode: %w", spec.Name, err)
		}
		g.Files[secretsDir+spec.Name+".json"] = secret.FromBytes(append(body, '\n'))
		exp := s.ExpiresAt
		if sec.LeaseDuration > 0 {
			exp = p.now().Add(time.Duration(sec.LeaseDuration) * time.Second)
		}
		for _, v := range secretStrings(sec.Data) {
			g.Secrets = append(g.Secrets, providers.IssuedSecret{Value: secret.New(v), What: "vault secret " + spec.Name, Expires: exp})
		}
		if sec.LeaseID != "" {
			now := p.now()
			g.Leases = append(g.Leases, leases.Lease{
				ID:         leaseID(KindSecret, sec.LeaseID),
				SessionID:  s.ID,
				Provider:   Name,
				Kind:       KindSecret,
				ExternalID: sec.LeaseID,
				IssuedAt:   now,
				ExpiresAt:  now.Add(time.Duration(sec.LeaseDuration) * time.Second),
				Renewable:  sec.Renewable,
				State:      leases.LeaseActive,
				Data:       map[string]string{"name": spec.Name},
			})
		}
	}
	return nil
}

// secretStrings collects the string values of a secret's data (nested
// maps too, as in KV v2's data.data): every one may be a credential.
// Short ones are skipped by the guard itself.
func secretStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, secretStrings(e)...)
		}
		return out
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, secretStrings(e)...)
		}
		return out
	}
	return nil
}
