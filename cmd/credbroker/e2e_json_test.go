package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EJSONOutput: every command that reports a result prints one JSON
// object with -o json, on success and on failure, with the same exit
// status as its text form (revoke ID, session and status are tested with
// their commands; egress check in TestEgressCheck).
func TestE2EJSONOutput(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)
	decode := func(r result, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Fatalf("not one JSON object: %v\n%s", err, r)
		}
	}

	t.Run("ConfigCheck", func(t *testing.T) {
		var ok configCheck
		decode(e.mustCLI(t, "config", "check", "-o", "json"), &ok)
		if !ok.OK || ok.Path != e.config || len(ok.Roles) == 0 || len(ok.Problems) != 0 {
			t.Fatalf("config check -o json = %+v", ok)
		}
		cfg, err := os.ReadFile(e.config)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(e.dir, "bad.yaml")
		broken := strings.Replace(string(cfg), "roles:\n", "roles:\n  agent-zero:\n    ttl: 0s\n    vault:\n      policies: [agent-readonly]\n", 1)
		if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, runOpts{}, "--config", bad, "config", "check", "-o", "json")
		var res configCheck
		decode(r, &res)
		if r.code != exitError || res.OK || len(res.Problems) == 0 {
			t.Fatalf("config check -o json of a broken config: exit %d, %+v", r.code, res)
		}
		p := res.Problems[0]
		if p.File != bad || p.Line == 0 || p.Field != "roles.agent-zero.ttl" || p.Hint == "" {
			t.Errorf("problem = %+v; want file, line, field roles.agent-zero.ttl and a hint", p)
		}
	})

	t.Run("GuardScanAndAuditVerify", func(t *testing.T) {
		s := e.startJSON(t, "--role", "agent-readonly")
		tok := e.sessionToken(t, s.Dir)
		repo := t.TempDir()
		if err := os.WriteFile(filepath.Join(repo, "notes.txt"), []byte("x\nVAULT_TOKEN="+tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, runOpts{dir: repo}, "guard", "scan", "--no-revoke", "-o", "json", ".")
		if strings.Contains(r.stdout, tok) {
			t.Fatal("guard scan -o json printed the token")
		}
		var gs guardScan
		decode(r, &gs)
		if r.code != exitLeak || len(gs.Findings) != 1 || gs.Fingerprints == 0 {
			t.Fatalf("guard scan -o json: exit %d, %+v; want exit %d and one finding", r.code, gs, exitLeak)
		}
		if f := gs.Findings[0]; f.Session != s.ID || f.Line != 2 || f.Provider != "vault" || f.Revoked {
			t.Errorf("finding = %+v; want line 2 of session %s, not revoked (--no-revoke)", f, s.ID)
		}
		var av auditVerify
		decode(e.mustCLI(t, "audit", "verify", "-o", "json"), &av)
		if !av.OK || av.Records == 0 || len(av.Head) != 64 {
			t.Fatalf("audit verify -o json = %+v", av)
		}
	})

	t.Run("IncidentClear", func(t *testing.T) {
		e.mustCLI(t, "revoke", "--all", "--reason", "json test", "-o", "json")
		var cleared map[string]bool
		decode(e.mustCLI(t, "incident", "clear", "-o", "json"), &cleared)
		if !cleared["cleared"] {
			t.Fatalf("incident clear -o json = %v", cleared)
		}
	})
}
