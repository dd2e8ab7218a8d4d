package agentenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
)

// FuzzParseEnv: the env parser never panics, names the line of what it
// rejects, and whatever it accepts renders back to the same variables.
func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("A=1\nB='two words'\n"))
	f.Add([]byte("# comment\nVAULT_TOKEN=hvs.x\n"))
	f.Add([]byte("X='it'\\''s'\n"))
	f.Add([]byte("BAD LINE\n"))
	f.Add([]byte("A='unterminated\n"))
	f.Add(RenderEnv(map[string]secret.Value{"K": secret.New("v\nwith=newline 'and' quotes")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseEnv(data)
		if err != nil {
			if !strings.Contains(err.Error(), "line ") {
				t.Fatalf("rejection does not name a line: %v", err)
			}
			return
		}
		vals := map[string]secret.Value{}
		for k, v := range m {
			vals[k] = secret.New(v)
		}
		defer func() {
			// RenderEnv panics on names it must never write; ParseEnv
			// must not have accepted such a name.
			if r := recover(); r != nil {
				t.Fatalf("ParseEnv accepted a name RenderEnv refuses: %v", r)
			}
		}()
		again, err := ParseEnv(RenderEnv(vals))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		for k, v := range m {
			if again[k] != v {
				t.Fatalf("round trip changed %s", k)
			}
		}
	})
}

// FuzzLoadSession: whatever a session dir holds, the exec wrapper's loader
// refuses it with a message or accepts a complete, unexpired session.
func FuzzLoadSession(f *testing.F) {
	meta, _ := MarshalMeta(Meta{ID: "s-abc", Role: "r", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	f.Add(meta, []byte("A=1\n"))
	f.Add([]byte(`{"id":"s-x","expires_at":"2001-01-01T00:00:00Z"}`), []byte(""))
	f.Add([]byte(`{"revoked":true}`), []byte("A=1\n"))
	f.Add([]byte("not json"), []byte("=\n"))
	f.Fuzz(func(t *testing.T, metaJSON, env []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, MetaFile), metaJSON, 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, EnvFile), env, 0o400); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		l, err := LoadSession(dir, now)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "agentenv: ") {
				t.Fatalf("unclear rejection: %v", err)
			}
			return
		}
		if l.Meta.Revoked || !now.Before(l.Meta.ExpiresAt) {
			t.Fatalf("accepted a revoked or expired session: %+v", l.Meta)
		}
	})
}
