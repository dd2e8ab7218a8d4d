package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// FingerprintLen is the length, in hex digits, of a provider fingerprint.
const FingerprintLen = 16

// ProviderFingerprints returns, for each configured provider, a short hex
// digest of the parts of its configuration that decide which backend
// objects a provider-wide revoke-all reaches: for Vault the address,
// namespace and token role; for AWS the region, profile, endpoints,
// revocation method, web identity issuer, subject and audience, and every
// role ARN the roles assume; for Kubernetes the kubeconfig file, context
// and every namespace the provider and the roles name. Brokers of a fleet
// whose digests differ for a provider may not reach each other's
// credentials with one call.
//
// Only non-secret fields are read: never a token, a secret id, a DSN, a
// key file's content, an external id or a policy. The digest is the first
// FingerprintLen hex digits of the SHA-256 of the fields as canonical JSON
// (sorted, deduplicated lists), so it is stable across field order in the
// file and across runs.
func (c *Config) ProviderFingerprints() map[string]string {
	out := map[string]string{}
	if v := c.Providers.Vault; v != nil {
		out["vault"] = digest(map[string]any{
			"address": v.Address, "namespace": v.Namespace, "token_role": v.TokenRole,
		})
	}
	if a := c.Providers.AWS; a != nil {
		fields := map[string]any{
			"region": a.Region, "profile": a.Profile, "sts_endpoint": a.STSEndpoint,
			"iam_endpoint": a.IAMEndpoint, "endpoint_url": a.EndpointURL,
			"revocation": a.Revocation, "role_arns": c.roleValues(func(r Role) string {
				if r.AWS == nil {
					return ""
				}
				return r.AWS.RoleARN
			}),
		}
		if w := a.WebIdentity; w != nil {
			fields["web_identity"] = map[string]string{"issuer": w.Issuer, "subject": w.Subject, "audience": w.Audience}
		}
		out["aws"] = digest(fields)
	}
	if k := c.Providers.Kube; k != nil {
		ns := c.roleValues(func(r Role) string {
			if r.Kube == nil {
				return ""
			}
			return r.Kube.Namespace
		})
		ns = append(ns, k.Namespaces...)
		out["kube"] = digest(map[string]any{
			"kubeconfig": k.Kubeconfig, "context": k.Context, "namespaces": sortedSet(ns),
		})
	}
	return out
}

// roleValues returns the non-empty values f picks from the roles, sorted
// and deduplicated.
func (c *Config) roleValues(f func(Role) string) []string {
	var vs []string
	for _, r := range c.Roles {
		if v := f(r); v != "" {
			vs = append(vs, v)
		}
	}
	return sortedSet(vs)
}

func sortedSet(vs []string) []string {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	if vs == nil {
		vs = []string{}
	}
	return vs
}

// digest hashes fields as JSON (encoding/json sorts map keys).
func digest(fields map[string]any) string {
	b, err := json.Marshal(fields)
	if err != nil {
		panic("configs: fingerprint fields do not marshal: " + err.Error()) // only strings and lists of them
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:FingerprintLen]
}
