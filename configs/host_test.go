package configs

import (
	"os"
	"strings"
	"testing"
)

func TestEffectiveHostID(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		driver, set, want string
	}{
		{"sqlite", "", ""},
		{"sqlite", "box-1", "box-1"},
		{"postgres", "runner-7.ci", "runner-7.ci"},
		{"postgres", "", name},
	}
	for _, tc := range cases {
		c := Config{Broker: Broker{HostID: tc.set}, Store: Store{Driver: tc.driver}}
		got, err := c.EffectiveHostID()
		if err != nil || got != tc.want {
			t.Errorf("driver %s, host_id %q: EffectiveHostID() = %q, %v; want %q", tc.driver, tc.set, got, err, tc.want)
		}
	}
}

func TestHostIDValidation(t *testing.T) {
	for id, ok := range map[string]bool{
		"runner-7": true, "ci_box.example.com": true, strings.Repeat("a", 63): true,
		strings.Repeat("a", 64): false, "a/b": false, "a b": false, "é": false,
	} {
		if validHostID(id) != ok {
			t.Errorf("validHostID(%q) = %v, want %v", id, !ok, ok)
		}
	}
	c := Config{Broker: Broker{HostID: "bad/host", StateDir: "/s", RefreshInterval: Duration(1)}}
	var ps problems
	c.Broker.validate(&ps)
	if len(ps) != 1 || ps[0].Path != "broker.host_id" {
		t.Errorf("broker.host_id %q: problems %v, want one on broker.host_id", c.Broker.HostID, ps)
	}
}
