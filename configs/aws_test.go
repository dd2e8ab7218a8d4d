package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const awsProv = "providers:\n  aws:\n    region: eu-west-1\n"

func awsRole(body string) string {
	return "roles:\n  r:\n    aws:\n      role_arn: arn:aws:iam::123456789012:role/agent\n" + body
}

func TestValidateAWS(t *testing.T) {
	long := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + strings.Repeat("b", 2100) + `"}]}`
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"aws role without provider", "roles:\n  r:\n    aws: " + marker + "\n      role_arn: arn:aws:iam::1:role/a\n",
			"roles.r.aws", "providers.aws is not configured", "add a providers.aws block"},
		{"bad arn", awsProv + "roles:\n  r:\n    aws:\n      role_arn: agent " + marker + "\n",
			"roles.r.aws.role_arn", `"agent" is not an ARN`, "set the ARN of the role"},
		{"policy not json", awsProv + awsRole("      policy: '{nope' "+marker+"\n"),
			"roles.r.aws.policy", "not valid JSON", "JSON IAM policy document"},
		{"policy without statement", awsProv + awsRole("      policy: '{\"Version\":\"2012-10-17\"}' "+marker+"\n"),
			"roles.r.aws.policy", "not an IAM policy document", `give the policy a "Statement"`},
		{"policy too long", awsProv + awsRole("      policy: '"+long+"' "+marker+"\n"),
			"roles.r.aws.policy", "characters after removing whitespace", "STS allows 2048 characters"},
		{"policy and file", awsProv + awsRole("      policy: '{}'\n      policy_file: /x.json "+marker+"\n"),
			"roles.r.aws.policy_file", "both policy and policy_file are set", "keep either"},
		{"policy file relative", awsProv + awsRole("      policy_file: p.json "+marker+"\n"),
			"roles.r.aws.policy_file", `"p.json" is relative`, "absolute path"},
		{"max_duration too short", awsProv + awsRole("      max_duration: 10m "+marker+"\n"),
			"roles.r.aws.max_duration", "outside STS's 15m..12h range", "from 15m to 12h"},
		{"revocation", "providers:\n  aws:\n    revocation: hope " + marker + "\n" + awsRole(""),
			"providers.aws.revocation", `"hope" is not a revocation method`, "iam-deny-policy"},
		{"sts endpoint", "providers:\n  aws:\n    sts_endpoint: localhost:9000 " + marker + "\n" + awsRole(""),
			"providers.aws.sts_endpoint", "is not an http(s) URL", "use an http(s) URL"},
		{"web identity without issuer", "providers:\n  aws:\n    web_identity: " + marker + "\n      listen: 127.0.0.1:8400\n" + awsRole(""),
			"providers.aws.web_identity.issuer", "is not an http(s) URL", "use an http(s) URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t)
			wantOneError(t, tc.yaml, tc.path, tc.msg, tc.hint)
		})
	}
}

func TestAWSPolicyFileIsCompacted(t *testing.T) {
	pf := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(pf, []byte("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [ {\"Effect\": \"Deny\", \"Action\": \"*\", \"Resource\": \"*\"} ]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	isolateEnv(t)
	cfg, err := Parse("c.yaml", []byte(awsProv+awsRole("      policy_file: "+pf+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Roles["r"].AWS.SessionPolicy
	if got != `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}` {
		t.Errorf("session policy = %q, want the file's JSON without whitespace", got)
	}
	if d := cfg.Roles["r"].AWS.MaxDuration.D().String(); d != "1h0m0s" {
		t.Errorf("max_duration default = %s, want 1h", d)
	}
	if cfg.Providers.AWS.Revocation != RevokeIAMDenyPolicy {
		t.Errorf("revocation default = %q", cfg.Providers.AWS.Revocation)
	}
}
