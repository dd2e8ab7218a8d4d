package configs

import "testing"

// TestEgressRuleCovers: what a rule covers, as the proxy's bundle and
// the inject hosts' validation ask it.
func TestEgressRuleCovers(t *testing.T) {
	rule := func(s string) EgressRule {
		r, err := ParseEgressRule(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		a, r string
		want bool
	}{
		{"api.test:443", "api.test:443", true},
		{"api.test:443", "api.test:80", false},
		{"api.test:443", "api.test", true},
		{"api.test:443", "api.test:*", false},
		{"api.test:*", "api.test:8443", true},
		{"api.test:*", "api.test:*", true},
		{"api.test:443", "x.api.test:443", false},
		{"*.test:443", "api.test:443", true},
		{"*.test:443", "*.api.test:443", true},
		{"*.test:443", "*.test:443", true},
		{"*.test:443", "test:443", false},
		{"api.test:443", "*.api.test:443", false},
		{"127.0.0.1:8200", "127.0.0.1:8200", true},
		{"127.0.0.1:8200", "127.0.0.0/8:8200", false},
		{"127.0.0.1:8200", "localhost:8200", false},
		{"api.test:443", "127.0.0.1:443", false},
	}
	for _, c := range cases {
		if got := rule(c.a).Covers(rule(c.r)); got != c.want {
			t.Errorf("%s covers %s: %v, want %v", c.a, c.r, got, c.want)
		}
	}
}
