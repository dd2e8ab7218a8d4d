package agentenv

import (
	"strings"
	"testing"
	"time"
)

func TestMetaGolden(t *testing.T) {
	m := testMeta("s-0123abcd")
	m.CreatedAt = m.CreatedAt.In(time.FixedZone("CET", 3600))
	b, err := MarshalMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "session.json.golden", b)

	got, err := ParseMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != m.ID || got.Role != m.Role || !got.CreatedAt.Equal(m.CreatedAt) ||
		!got.ExpiresAt.Equal(m.ExpiresAt) || got.Revoked || got.Mount != m.Mount || got.UID != -1 {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}
	if strings.Contains(string(b), "uid") {
		t.Error("session.json must not carry the uid")
	}
}

func TestParseMeta(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok", `{"id":"a-1","expires_at":"2026-01-01T00:00:00Z","future":1}`, ""},
		{"not json", `id: a`, "parse session.json: invalid character"},
		{"trailing", `{"id":"a","expires_at":"2026-01-01T00:00:00Z"} {}`, "trailing data"},
		{"no id", `{"expires_at":"2026-01-01T00:00:00Z"}`, "invalid session id"},
		{"escaping id", `{"id":"../x","expires_at":"2026-01-01T00:00:00Z"}`, "invalid session id"},
		{"no expiry", `{"id":"a"}`, "expires_at is missing"},
		{"bad time", `{"id":"a","expires_at":"soon"}`, "parse session.json"},
		{"revoked wrong type", `{"id":"a","expires_at":"2026-01-01T00:00:00Z","revoked":"yes"}`, "parse session.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMeta([]byte(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
