package proxy

import (
	"regexp"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/providers"
)

// TestPlaceholderShapes: each placeholder has the shape clients expect
// of the real value (and, where the shape allows, its length), differs
// from it, and is fresh each time.
func TestPlaceholderShapes(t *testing.T) {
	tests := []struct {
		name, real string
		shape      *regexp.Regexp
		sameLen    bool
	}{
		{providers.SecretAWSAccessKeyID, "ASIAQWERTYUIOPASDFGH", regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`), true},
		{providers.SecretAWSSecretKey, strings.Repeat("k", 40), regexp.MustCompile(`^[A-Za-z0-9+/]{40}$`), true},
		{providers.SecretAWSSessionToken, strings.Repeat("t", 700), regexp.MustCompile(`^[A-Za-z0-9+/]{700}$`), true},
		{providers.SecretVaultToken, "hvs." + strings.Repeat("v", 91), regexp.MustCompile(`^hvs\.[0-9A-Za-z]{91}$`), true},
		{providers.SecretVaultToken, "s." + strings.Repeat("v", 24), regexp.MustCompile(`^s\.[0-9A-Za-z]{24}$`), true},
		{providers.SecretVaultToken, "s." + strings.Repeat("v", 8), regexp.MustCompile(`^s\.[0-9A-Za-z]{22}$`), false},
		{providers.SecretKubeToken, "eyJhbGciOi.eyJpc3Mi.sig", regexp.MustCompile(`^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[0-9A-Za-z]{86}$`), false},
		{providers.SecretKubeToken, "eyJ" + strings.Repeat("k", 1200), regexp.MustCompile(`^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[0-9A-Za-z]+$`), true},
		{providers.SecretInjectPrefix + "API_KEY", "sk-ant-" + strings.Repeat("a", 90), regexp.MustCompile(`^cbph_[0-9A-Za-z]{92}$`), true},
		{providers.SecretInjectPrefix + "SHORT", "short", regexp.MustCompile(`^cbph_[0-9A-Za-z]{26}$`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newPlaceholder(tt.name, tt.real), newPlaceholder(tt.name, tt.real)
			if !tt.shape.MatchString(a) {
				t.Errorf("placeholder does not have the shape %s (length %d)", tt.shape, len(a))
			}
			if a == b || a == tt.real {
				t.Error("placeholder is not fresh")
			}
			if tt.sameLen && len(a) != len(tt.real) {
				t.Errorf("length %d, want the real value's %d", len(a), len(tt.real))
			}
		})
	}
}
