package configs

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseEgressRule(t *testing.T) {
	tests := []struct {
		in       string
		host     string
		wildcard bool
		prefix   string
		port     int
		err      string
	}{
		{in: "api.github.com:443", host: "api.github.com", port: 443},
		{in: "API.GitHub.com.", host: "api.github.com", port: 443},
		{in: "github.com:22", host: "github.com", port: 22},
		{in: "*.githubusercontent.com", host: "githubusercontent.com", wildcard: true, port: 443},
		{in: "registry.npmjs.org:*", host: "registry.npmjs.org", port: 0},
		{in: "10.1.2.3", prefix: "10.1.2.3/32", port: 443},
		{in: "10.1.2.3:5432", prefix: "10.1.2.3/32", port: 5432},
		{in: "10.0.0.0/8:5432", prefix: "10.0.0.0/8", port: 5432},
		{in: "10.0.0.0/8", prefix: "10.0.0.0/8", port: 443},
		{in: "2001:db8::1", prefix: "2001:db8::1/128", port: 443},
		{in: "[2001:db8::1]:22", prefix: "2001:db8::1/128", port: 22},
		{in: "fd00::/8", prefix: "fd00::/8", port: 443},
		{in: "[fd00::/8]:*", prefix: "fd00::/8", port: 0},
		{in: "https://api.openai.com/v1", err: `write only host:port, e.g. "api.openai.com:443"`},
		{in: "", err: "empty"},
		{in: " a.com", err: "spaces"},
		{in: "a.com:0", err: "not a number from 1 to 65535"},
		{in: "a.com:99999", err: "not a number from 1 to 65535"},
		{in: "a.com:https", err: "not a number"},
		{in: "*", err: "wildcard is only allowed"},
		{in: "a.*.com:443", err: "wildcard is only allowed"},
		{in: "-a.com", err: "not a valid host name"},
		{in: "10.0.0.1/8", err: "write 10.0.0.0/8"},
		{in: "2001:db8::1:443:x", err: "in brackets"},
		{in: "[::1", err: "no closing ]"},
		{in: "user@host:22", err: "characters no host name has"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseEgressRule(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseEgressRule(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEgressRule(%q): %v", tt.in, err)
			}
			var want netip.Prefix
			if tt.prefix != "" {
				want = netip.MustParsePrefix(tt.prefix)
			}
			if r.Host != tt.host || r.Wildcard != tt.wildcard || r.Prefix != want || r.Port != tt.port {
				t.Errorf("ParseEgressRule(%q) = %+v, want host %q wildcard %v prefix %v port %d", tt.in, r, tt.host, tt.wildcard, want, tt.port)
			}
		})
	}
}

func TestValidateEgress(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"bad allow rule", vaultProv + roleR + "    egress:\n      allow:\n        - github.com:443\n        - https://x.com " + marker + "\n",
			"roles.r.egress.allow[1]", `"https://x.com" is a URL`, "host:port"},
		{"bad deny rule", vaultProv + roleR + "    egress:\n      deny:\n        - 10.0.0.0/33 " + marker + "\n",
			"roles.r.egress.deny[0]", "not a valid CIDR", "host:port"},
		{"hosts value", "broker:\n  egress:\n    hosts:\n      minio.test: localhost " + marker + "\n" + vaultProv + roleR,
			"broker.egress.hosts.minio.test", `"localhost" is not an address`, "127.0.0.1"},
		{"hosts key", "broker:\n  egress:\n    hosts:\n      \"*.test\": 127.0.0.1 " + marker + "\n" + vaultProv + roleR,
			"broker.egress.hosts.*.test", "not a host name", "no wildcard"},
		{"allow not a list", vaultProv + roleR + "    egress:\n      allow: github.com " + marker + "\n",
			"roles.r.egress.allow", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			wantOneError(t, tt.yaml, tt.path, tt.msg, tt.hint)
		})
	}
}

func TestEgressHostsAndValidConfig(t *testing.T) {
	isolateEnv(t)
	yaml := "broker:\n  egress:\n    hosts:\n      MinIO.Test: 127.0.0.1\n      v6.test: \"::1\"\n" + vaultProv + roleR +
		"    egress:\n      allow: [\"*.github.com\", \"minio.test:9000\", \"10.0.0.0/8:*\"]\n      deny: [gist.github.com]\n"
	cfg, err := Load(writeConfig(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.EgressHosts()
	if h["minio.test"] != netip.MustParseAddr("127.0.0.1") || h["v6.test"] != netip.MustParseAddr("::1") || len(h) != 2 {
		t.Errorf("EgressHosts() = %v", h)
	}
	if e := cfg.Roles["r"].Egress; e == nil || len(e.Allow) != 3 || len(e.Deny) != 1 {
		t.Errorf("roles.r.egress = %+v", e)
	}
}

func TestEgressEndpoints(t *testing.T) {
	isolateEnv(t)
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	kcYAML := "current-context: b\ncontexts:\n- name: a\n  context: {cluster: one}\n- name: b\n  context: {cluster: two}\n" +
		"clusters:\n- name: one\n  cluster: {server: https://one.example:6443}\n- name: two\n  cluster: {server: https://127.0.0.1:16443}\n"
	if err := os.WriteFile(kc, []byte(kcYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Providers: Providers{
			Vault: &VaultProvider{Address: "http://vault.test:8200"},
			AWS:   &AWSProvider{Region: "eu-west-1", STSEndpoint: "http://127.0.0.1:9000", EndpointURL: "http://minio.test:9000"},
			Kube:  &KubeProvider{Kubeconfig: kc},
		},
	}
	role := Role{Vault: &VaultRole{}, AWS: &AWSRole{}, Kube: &KubeRole{}}
	eps, err := cfg.EgressEndpoints(role)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range eps {
		got = append(got, e.Provider+" "+e.Rule.Text)
	}
	want := "vault vault.test:8200,aws 127.0.0.1:9000,aws minio.test:9000,kube 127.0.0.1:16443"
	if strings.Join(got, ",") != want {
		t.Errorf("endpoints = %v, want %s", got, want)
	}
	// Only the providers the role uses; real AWS gets its regional names.
	cfg.Providers.AWS = &AWSProvider{Region: "eu-west-1"}
	eps, err = cfg.EgressEndpoints(Role{AWS: &AWSRole{}})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, e := range eps {
		got = append(got, e.Rule.Text)
	}
	if !strings.Contains(strings.Join(got, ","), "sts.eu-west-1.amazonaws.com:443") || len(got) != 6 {
		t.Errorf("aws endpoints = %v", got)
	}
	cfg.Providers.Kube.Kubeconfig = filepath.Join(dir, "missing")
	if _, err := cfg.EgressEndpoints(Role{Kube: &KubeRole{}}); err == nil || !strings.Contains(err.Error(), "providers.kube.kubeconfig") {
		t.Errorf("missing kubeconfig: err = %v", err)
	}
}
