package egress

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/credbroker/credbroker/configs"
)

// TestPolicyCheck names private and metadata addresses, but only as data:
// a Policy decides and never dials (it has no dialer), and its resolver
// here is a map, so no packet leaves the machine. The gateway's own test
// of those addresses (TestRefusedAddressesAreNeverDialed) fails on any
// dial through its hook.
func TestPolicyCheck(t *testing.T) {
	cfg := testConfig(
		[]string{"web.test:8443", "*.example.org", "public.test:443", "mixed.test:443", "db.corp:5432", "10.1.0.0/16:5432",
			"0.0.0.0/0:8080", "169.254.169.254:80", "[2001:db8::1]:22", "anyport.test:*"},
		[]string{"evil.example.org", "203.0.113.0/24:*"},
		map[string]string{"web.test": "127.0.0.1", "mapped.example.org": "127.0.0.2"},
	)
	cfg.Providers.Vault = &configs.VaultProvider{Address: "http://127.0.0.1:8200"}
	r := cfg.Roles["r"]
	r.Vault = &configs.VaultRole{}
	cfg.Roles["r"] = r
	dns := map[string][]netip.Addr{
		"public.test":   {netip.MustParseAddr("93.184.216.34")},
		"mixed.test":    {netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("93.184.216.35")},
		"a.example.org": {netip.MustParseAddr("10.9.9.9")},
		"db.corp":       {netip.MustParseAddr("10.1.2.3")},
		"b.example.org": {netip.MustParseAddr("203.0.113.5")},
		"anyport.test":  {netip.MustParseAddr("93.184.216.36")},
		"nobody.test":   {netip.MustParseAddr("93.184.216.37")},
		"c.example.org": {netip.MustParseAddr("::ffff:93.184.216.38")},
	}
	var lookups atomic.Int32
	res := &Resolver{Hosts: cfg.EgressHosts(), Lookup: func(_ context.Context, h string) ([]netip.Addr, error) {
		lookups.Add(1)
		return dns[h], nil
	}}
	p, err := NewPolicy(cfg, "r", res)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host  string
		port  int
		allow bool
		rule  string // substring of Decision.Rule
		why   string // substring of Reason (denials)
		fix   string // substring of Fix
		addrs string
	}{
		{"web.test", 8443, true, `allow[0] "web.test:8443"`, "", "", "127.0.0.1"},
		{"WEB.test.", 8443, true, `allow[0]`, "", "", "127.0.0.1"},
		{"web.test", 443, false, "", "no rule allows web.test:443", `allow with roles.r.egress.allow: "web.test:443"`, ""},
		{"example.org", 443, false, "", "no rule allows", "", ""},
		{"evil.example.org", 443, false, `deny[0] "evil.example.org"`, "is denied", "", ""},
		{"a.example.org", 443, false, "", "10.9.9.9) is a private address", `"10.9.9.9:443"`, ""},
		{"c.example.org", 443, true, `allow[1]`, "", "", "93.184.216.38"},
		// Mapped in broker.egress.hosts but allowed only by a wildcard:
		// the wildcard does not name it, so its loopback address is refused.
		{"mapped.example.org", 443, false, "", "(127.0.0.2) is a loopback address", `"127.0.0.2:443"`, ""},
		{"b.example.org", 443, false, `deny[1] "203.0.113.0/24:*"`, "is denied", "", ""},
		{"public.test", 443, true, `allow[2]`, "", "", "93.184.216.34"},
		{"mixed.test", 443, true, `allow[3]`, "", "", "93.184.216.35"},
		{"db.corp", 5432, true, `allow[4]`, "", "", "10.1.2.3"},
		{"10.1.9.9", 5432, true, `allow[5] "10.1.0.0/16:5432"`, "", "", "10.1.9.9"},
		{"10.1.9.9", 5433, false, "", "no rule allows 10.1.9.9:5433", "", ""},
		{"10.0.0.1", 8080, false, "", "10.0.0.1:8080 is a private address", `"10.0.0.1:8080"`, ""},
		{"93.184.216.99", 8080, true, `allow[6] "0.0.0.0/0:8080"`, "", "", "93.184.216.99"},
		{"169.254.169.254", 80, true, `allow[7]`, "", "", "169.254.169.254"},
		{"169.254.169.254", 443, false, "", "no rule allows 169.254.169.254:443", "", ""},
		{"fd00:ec2::254", 80, false, "", "no rule allows", "", ""},
		{"2001:db8::1", 22, true, `allow[8]`, "", "", "2001:db8::1"},
		{"[2001:db8::1]", 22, true, `allow[8]`, "", "", "2001:db8::1"},
		{"anyport.test", 2222, true, `allow[9]`, "", "", ""},
		{"127.0.0.1", 8200, true, "provider vault (providers.vault.address 127.0.0.1:8200)", "", "", "127.0.0.1"},
		{"127.0.0.1", 8201, false, "", "no rule allows", "", ""},
		{"bad host!", 443, false, "", "is not a host name", "", ""},
		{"web.test", 0, false, "", "not a TCP port", "", ""},
	}
	for _, tt := range tests {
		d := p.Check(context.Background(), tt.host, tt.port)
		name := d.Target()
		if d.Allowed != tt.allow || !strings.Contains(d.Rule, tt.rule) || !strings.Contains(d.Reason, tt.why) || !strings.Contains(d.Fix, tt.fix) {
			t.Errorf("%s: got allowed=%v rule=%q reason=%q fix=%q; want allowed=%v rule~%q reason~%q fix~%q",
				name, d.Allowed, d.Rule, d.Reason, d.Fix, tt.allow, tt.rule, tt.why, tt.fix)
		}
		if tt.addrs != "" && (len(d.Addrs) != 1 || d.Addrs[0].String() != tt.addrs) {
			t.Errorf("%s: addresses %v, want [%s]", name, d.Addrs, tt.addrs)
		}
		if !tt.allow && len(d.Addrs) != 0 {
			t.Errorf("%s: a refusal carries addresses %v", name, d.Addrs)
		}
	}
	// No DNS lookup for a name no rule allows (no exfiltration by lookup).
	before := lookups.Load()
	if d := p.Check(context.Background(), "nobody.test", 443); d.Allowed {
		t.Errorf("nobody.test allowed")
	}
	if lookups.Load() != before {
		t.Errorf("a name no rule allows was looked up")
	}
}

func TestNewPolicyWithoutEgress(t *testing.T) {
	cfg := testConfig(nil, nil, nil)
	cfg.Roles["plain"] = configs.Role{Name: "plain"}
	p, err := NewPolicy(cfg, "plain", nil)
	if p != nil || err != nil {
		t.Errorf("NewPolicy(no egress) = %v, %v; want nil, nil", p, err)
	}
	if _, err := NewPolicy(cfg, "nope", nil); err == nil {
		t.Errorf("NewPolicy(unknown role) did not fail")
	}
}
