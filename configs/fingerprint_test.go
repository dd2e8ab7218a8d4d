package configs

import (
	"regexp"
	"testing"
)

// fingerprintBase is a config with every provider and a role using each.
func fingerprintBase() *Config {
	return &Config{
		Store: Store{Driver: "postgres", DSNEnv: "CREDBROKER_DSN"},
		Providers: Providers{
			Vault: &VaultProvider{Address: "https://vault.example:8200", Namespace: "team", TokenRole: "credbroker",
				Auth: VaultAuth{TokenEnv: "VAULT_TOKEN"}},
			AWS: &AWSProvider{Region: "eu-west-1", STSEndpoint: "https://sts.example", Revocation: RevokeIAMDenyPolicy,
				WebIdentity: &AWSWebIdentity{Issuer: "https://oidc.example", Subject: "credbroker", KeyFile: "/etc/credbroker/key.pem"}},
			Kube: &KubeProvider{Kubeconfig: "/etc/credbroker/kubeconfig", Context: "prod", Namespaces: []string{"old"}},
		},
		Roles: map[string]Role{
			"agent": {
				Vault: &VaultRole{Policies: []string{"read"}},
				AWS:   &AWSRole{RoleARN: "arn:aws:iam::123456789012:role/agent", ExternalID: "ext-secret", Policy: `{"Version":"2012-10-17"}`},
				Kube:  &KubeRole{Namespace: "agents", Role: "reader"},
			},
		},
	}
}

// TestProviderFingerprints checks that every field a provider-wide
// revoke-all depends on changes that provider's fingerprint (and only
// that one), and that secret-bearing or unrelated fields change none.
func TestProviderFingerprints(t *testing.T) {
	base := fingerprintBase().ProviderFingerprints()
	hexRE := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for _, p := range []string{"vault", "aws", "kube"} {
		if !hexRE.MatchString(base[p]) {
			t.Fatalf("fingerprint of %s = %q, want %d hex digits", p, base[p], FingerprintLen)
		}
	}
	tests := []struct {
		name    string
		mutate  func(c *Config)
		changed string // provider whose fingerprint must change; "" for none
	}{
		{"vault address", func(c *Config) { c.Providers.Vault.Address = "https://other:8200" }, "vault"},
		{"vault namespace", func(c *Config) { c.Providers.Vault.Namespace = "other" }, "vault"},
		{"vault token role", func(c *Config) { c.Providers.Vault.TokenRole = "other" }, "vault"},
		{"aws region", func(c *Config) { c.Providers.AWS.Region = "us-east-1" }, "aws"},
		{"aws sts endpoint", func(c *Config) { c.Providers.AWS.STSEndpoint = "https://minio.example" }, "aws"},
		{"aws revocation", func(c *Config) { c.Providers.AWS.Revocation = RevokeMinIOTokens }, "aws"},
		{"aws role arn", func(c *Config) { c.Roles["agent"].AWS.RoleARN = "arn:aws:iam::123456789012:role/other" }, "aws"},
		{"aws second role", func(c *Config) {
			c.Roles["ci"] = Role{AWS: &AWSRole{RoleARN: "arn:aws:iam::123456789012:role/ci"}}
		}, "aws"},
		{"aws web identity issuer", func(c *Config) { c.Providers.AWS.WebIdentity.Issuer = "https://other.example" }, "aws"},
		{"kube context", func(c *Config) { c.Providers.Kube.Context = "staging" }, "kube"},
		{"kube kubeconfig", func(c *Config) { c.Providers.Kube.Kubeconfig = "/other" }, "kube"},
		{"kube provider namespace", func(c *Config) { c.Providers.Kube.Namespaces = []string{"old", "older"} }, "kube"},
		{"kube role namespace", func(c *Config) { c.Roles["agent"].Kube.Namespace = "bots" }, "kube"},
		// Secret-bearing fields and fields a revoke-all does not depend on.
		{"vault token env", func(c *Config) { c.Providers.Vault.Auth.TokenEnv = "OTHER_TOKEN" }, ""},
		{"vault approle secret", func(c *Config) {
			c.Providers.Vault.Auth = VaultAuth{AppRole: &AppRole{RoleID: "role-id", SecretIDEnv: "SECRET_ID"}}
		}, ""},
		{"store dsn", func(c *Config) { c.Store.DSNEnv, c.Store.DSNFile = "", "/etc/credbroker/dsn" }, ""},
		{"aws external id", func(c *Config) { c.Roles["agent"].AWS.ExternalID = "another-secret" }, ""},
		{"aws session policy", func(c *Config) { c.Roles["agent"].AWS.Policy = `{"Version":"2012-10-17","Statement":[]}` }, ""},
		{"aws oidc key file", func(c *Config) { c.Providers.AWS.WebIdentity.KeyFile = "/other/key.pem" }, ""},
		{"vault role policies", func(c *Config) { c.Roles["agent"].Vault.Policies = []string{"write"} }, ""},
		{"same namespace twice", func(c *Config) { c.Providers.Kube.Namespaces = []string{"old", "agents", "old"} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fingerprintBase()
			tc.mutate(c)
			got := c.ProviderFingerprints()
			for _, p := range []string{"vault", "aws", "kube"} {
				if changed := got[p] != base[p]; changed != (p == tc.changed) {
					t.Errorf("%s fingerprint changed = %v (%s -> %s), want %v", p, changed, base[p], got[p], p == tc.changed)
				}
			}
		})
	}
}

// TestProviderFingerprintsOnlyConfigured checks that a provider that is not
// configured has no fingerprint and that the digest is stable.
func TestProviderFingerprintsOnlyConfigured(t *testing.T) {
	c := fingerprintBase()
	c.Providers.AWS, c.Providers.Kube = nil, nil
	got := c.ProviderFingerprints()
	if len(got) != 1 || got["vault"] == "" {
		t.Fatalf("fingerprints = %v, want only vault", got)
	}
	if again := c.ProviderFingerprints(); again["vault"] != got["vault"] {
		t.Fatalf("fingerprint not stable: %s then %s", got["vault"], again["vault"])
	}
}
