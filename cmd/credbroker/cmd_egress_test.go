package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const egressCheckConfig = `broker:
  state_dir: /tmp/credbroker-egress-check/state
  runtime_dir: /tmp/credbroker-egress-check/run
  egress:
    hosts:
      minio.test: 127.0.0.1
providers:
  vault:
    address: http://127.0.0.1:8200
roles:
  dev:
    vault:
      policies: [dev]
    egress:
      allow: [minio.test:9000, "*.github.com"]
      deny: [gist.github.com]
  plain:
    vault:
      policies: [p]
`

func TestEgressCheck(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(egressCheckConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--role", "dev", "http://minio.test:9000/b?secret=1"}, 0, `allow minio.test:9000 (127.0.0.1) by roles.dev.egress.allow[0] "minio.test:9000"`},
		{[]string{"--role", "dev", "gist.github.com"}, 4, `deny gist.github.com:443: gist.github.com:443 is denied (by roles.dev.egress.deny[0] "gist.github.com")`},
		{[]string{"--role", "dev", "http://169.254.169.254/latest"}, 4, `allow with roles.dev.egress.allow: "169.254.169.254:80"`},
		{[]string{"--role", "dev", "127.0.0.1:8200"}, 0, "by provider vault (providers.vault.address 127.0.0.1:8200)"},
		{[]string{"--role", "plain", "a.test"}, 4, "role plain has no egress block"},
		{[]string{"--role", "nope", "a.test"}, 7, ""},
		{[]string{"--role", "dev", "a.test:99999"}, 2, ""},
		{[]string{"a.test"}, 2, ""},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(append([]string{"--config", cfg, "egress", "check"}, tt.args...), nil, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String(), tt.out) {
			t.Errorf("egress check %v: exit %d, out %q, err %q; want exit %d and %q", tt.args, code, out.String(), errOut.String(), tt.code, tt.out)
		}
		if strings.Contains(out.String()+errOut.String(), "secret=1") {
			t.Errorf("egress check %v printed the URL's query", tt.args)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"--config", cfg, "egress", "check", "--role", "dev", "-o", "json", "x.github.com:22"}, nil, &out, &out); code != 4 {
		t.Errorf("json deny: exit %d", code)
	}
	var res struct {
		Decision, Fix string
		Allowed       bool
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Decision != "deny" || res.Allowed || res.Fix != `allow with roles.dev.egress.allow: "x.github.com:22"` {
		t.Errorf("json: %+v %v\n%s", res, err, out.String())
	}
}
