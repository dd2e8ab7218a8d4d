package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// TestPrintHostsMarksDivergentConfig: status --all-hosts prints every
// host's fingerprints and marks the host whose config differs, and only
// that one, with what it means for revoke --all.
func TestPrintHostsMarksDivergentConfig(t *testing.T) {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := broker.Status{Host: "a", Hosts: []broker.HostInfo{
		{Host: "a", SeenAt: seen, This: true, Fingerprints: map[string]string{"vault": "1111111111111111", "aws": "2222222222222222"}},
		{Host: "b", SeenAt: seen, Fingerprints: map[string]string{"vault": "3333333333333333"}, Differs: []string{"vault"}},
		{Host: "c", SeenAt: seen, Fingerprints: map[string]string{"vault": "1111111111111111"}},
	}}
	var buf bytes.Buffer
	printHosts(&buf, st)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := map[string][]string{
		"a ": {"aws=2222222222222222 vault=1111111111111111", "this host"},
		"b ": {"vault=3333333333333333", "DIFFERS (vault): config differs from this host's: revoke --all here cannot reach its credentials"},
		"c ": {"vault=1111111111111111", "same as this host's"},
	}
	found := 0
	for _, l := range lines {
		for prefix, parts := range want {
			if !strings.HasPrefix(l, prefix) {
				continue
			}
			found++
			for _, p := range parts {
				if !strings.Contains(l, p) {
					t.Errorf("line for host %q lacks %q:\n%s", strings.TrimSpace(prefix), p, buf.String())
				}
			}
			if prefix != "b " && strings.Contains(l, "DIFFERS") {
				t.Errorf("host %q marked as differing:\n%s", strings.TrimSpace(prefix), buf.String())
			}
		}
	}
	if found != 3 {
		t.Fatalf("printed %d host lines, want 3:\n%s", found, buf.String())
	}
}
