package configs

import "testing"

// TestValidateDelivery: each mistake of proxy delivery is named with its
// line and a fix.
func TestValidateDelivery(t *testing.T) {
	egress := "    egress:\n      allow: [\"api.test:443\"]\n"
	inject := func(fields string) string {
		return "    inject:\n      - env: API_KEY\n        path: secret/data/api\n        field: key\n" + fields
	}
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"unknown delivery", vaultProv + roleR + egress + "    delivery: tunnel " + marker + "\n",
			"roles.r.delivery", `"tunnel" is not a delivery`, `"proxy"`},
		{"proxy without egress", vaultProv + roleR + "    delivery: proxy " + marker + "\n",
			"roles.r.delivery", "has no egress block", "add an egress block"},
		{"inject host not allowed", vaultProv + roleR + egress + inject("        header: \"x-api-key: {}\"\n        hosts:\n          - other.test:443 "+marker+"\n"),
			"roles.r.inject[0].hosts[0]", "not in the role's egress.allow", `add "other.test:443" to the role's egress.allow`},
		{"header not a token", vaultProv + roleR + egress + inject("        hosts: [\"api.test:443\"]\n        header: \"x api key: {}\" "+marker+"\n"),
			"roles.r.inject[0].header", "is not a header name", "Name: template"},
		{"header owned by the gateway", vaultProv + roleR + egress + inject("        hosts: [\"api.test:443\"]\n        header: \"X-Vault-Token: {}\" "+marker+"\n"),
			"roles.r.inject[0].header", "set by the gateway or the protocol", "Name: template"},
		{"template without {}", vaultProv + roleR + egress + inject("        hosts: [\"api.test:443\"]\n        header: \"Authorization: Bearer\" "+marker+"\n"),
			"roles.r.inject[0].header", "must hold {} exactly once", "Name: template"},
		{"two ways", vaultProv + roleR + egress + "    inject:\n      - env: API_KEY " + marker + "\n        path: secret/data/api\n        field: key\n        hosts: [\"api.test:443\"]\n        header: \"x-api-key: {}\"\n        query: key\n",
			"roles.r.inject[0]", "2 ways to put the value", "exactly one of"},
		{"bound to an address", vaultProv + roleR + "    egress:\n      allow: [\"10.0.0.1:443\"]\n" + inject("        header: \"x-api-key: {}\"\n        hosts:\n          - 10.0.0.1:443 "+marker+"\n"),
			"roles.r.inject[0].hosts[0]", "bound to names with a port", "api.example.com:443"},
		{"vault secrets with proxy", vaultProv + "roles:\n  r:\n    delivery: proxy\n" + egress + "    vault:\n      policies: [p]\n      secrets: " + marker + "\n        - name: db\n          path: secret/data/db\n",
			"roles.r.vault.secrets", "would put real values in the sandbox", "inject entry"},
		{"leak action", "broker:\n  egress:\n    leak_action: ignore " + marker + "\n" + vaultProv + roleR,
			"broker.egress.leak_action", `"ignore" is not a leak action`, `"refuse"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			wantOneError(t, tt.yaml, tt.path, tt.msg, tt.hint)
		})
	}
}

// TestDeliveryFor: a provider block's delivery wins over the role's.
func TestDeliveryFor(t *testing.T) {
	isolateEnv(t)
	yaml := vaultProv + "  aws:\n    region: us-east-1\nroles:\n  r:\n    delivery: proxy\n    egress:\n      allow: [\"api.test:443\"]\n" +
		"    vault:\n      policies: [p]\n      delivery: files\n    aws:\n      role_arn: arn:aws:iam::1:role/r\n"
	c, err := Load(writeConfig(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Roles["r"]
	if r.DeliveryFor("vault") != DeliveryFiles || r.DeliveryFor("aws") != DeliveryProxy || !r.UsesProxy() {
		t.Fatalf("vault %s aws %s", r.DeliveryFor("vault"), r.DeliveryFor("aws"))
	}
	if (Role{Vault: &VaultRole{}}).UsesProxy() {
		t.Fatal("a role without proxy delivery or inject uses the proxy")
	}
}
