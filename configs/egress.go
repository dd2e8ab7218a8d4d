package configs

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultEgressPort is the port of an egress rule written without one.
const DefaultEgressPort = 443

// Egress is a role's network policy: its sessions reach, through the
// broker's gateway, only what Allow lists (plus the role's own providers'
// endpoints) and never what Deny lists.
type Egress struct {
	// Allow lists host:port, *.suffix:port, IP or CIDR rules (port 443
	// when left out, * for any port).
	Allow []string `yaml:"allow"`
	// Deny lists rules of the same forms; a deny rule wins over any allow.
	Deny []string `yaml:"deny"`
}

// BrokerEgress holds the gateway settings shared by every role.
type BrokerEgress struct {
	// Hosts maps names to addresses, like /etc/hosts or curl --resolve:
	// the gateway resolves these names to these addresses without DNS.
	// A rule that names such a host exactly reaches its address even when
	// it is private or loopback (the operator wrote the mapping).
	Hosts map[string]string `yaml:"hosts"`
	// LeakAction is what the gateway does when a session sends a
	// placeholder to a host it is not bound to (delivery: proxy): "revoke"
	// (default) refuses the request and ends the session, "refuse" only
	// refuses and audits it.
	LeakAction string `yaml:"leak_action"`
}

// Values of broker.egress.leak_action.
const (
	LeakActionRevoke = "revoke"
	LeakActionRefuse = "refuse"
)

// EgressRule is one parsed allow or deny rule.
type EgressRule struct {
	// Text is the rule as written in the config.
	Text string
	// Host is the lower-case name for name rules ("" for IP rules).
	Host string
	// Wildcard makes Host a suffix: the rule matches names ending in
	// "." + Host (not Host itself).
	Wildcard bool
	// Prefix is the address or CIDR of IP rules (invalid for name rules).
	Prefix netip.Prefix
	// Port is the port the rule covers; 0 means any port.
	Port int
}

// String is the rule as written.
func (r EgressRule) String() string { return r.Text }

// IsIP reports whether the rule names an address or CIDR.
func (r EgressRule) IsIP() bool { return r.Prefix.IsValid() }

// Covers reports whether a matches every destination that r matches: the
// same port or every port, and every name r matches (a "*.suffix" rule
// covers the names below the suffix). An address rule covers only a rule
// of the same single address (conservative for a CIDR).
func (a EgressRule) Covers(r EgressRule) bool {
	if a.Port != 0 && a.Port != r.Port {
		return false
	}
	switch {
	case a.IsIP() || r.IsIP():
		return a.IsIP() && r.IsIP() && r.Prefix.IsSingleIP() && a.Prefix.Addr() == r.Prefix.Addr()
	case a.Wildcard && r.Wildcard:
		return r.Host == a.Host || strings.HasSuffix(r.Host, "."+a.Host)
	case a.Wildcard:
		return strings.HasSuffix(r.Host, "."+a.Host)
	case r.Wildcard:
		return false
	}
	return a.Host == r.Host
}

// egressRuleHint says how to write a rule.
const egressRuleHint = `write host:port, *.suffix:port, an IP or a CIDR, optionally with :port (default 443, * for any), e.g. "api.github.com:443" or "10.0.0.0/8:5432"`

// ParseEgressRule parses an allow or deny rule.
func ParseEgressRule(s string) (EgressRule, error) {
	r := EgressRule{Text: s, Port: DefaultEgressPort}
	if s == "" || strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n") {
		return r, errors.New("empty or contains spaces")
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		host, _, _ := strings.Cut(rest, "/")
		port := map[string]string{"http": "80", "https": "443"}[strings.ToLower(scheme)]
		if port != "" && !strings.Contains(host, ":") {
			host += ":" + port
		}
		return r, fmt.Errorf("%q is a URL; write only host:port, e.g. %q", s, host)
	}
	if strings.ContainsAny(s, "?#@\\") {
		return r, fmt.Errorf("%q holds characters no host name has", s)
	}
	addr, port, err := splitRulePort(s)
	if err != nil {
		return r, err
	}
	if port != "" {
		if r.Port, err = parseRulePort(port); err != nil {
			return r, err
		}
	}
	return parseRuleHost(r, addr)
}

// splitRulePort splits "host:port", "[v6]:port", "cidr:port" and bare
// addresses; port is "" when left out.
func splitRulePort(s string) (addr, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("%q has no closing ]", s)
		}
		addr, rest := s[1:end], s[end+1:]
		if rest == "" {
			return addr, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Errorf("%q: expected :port after ]", s)
		}
		return addr, rest[1:], nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s, "", nil // a bare IPv4 or IPv6 address
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return s, "", nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", nil
	}
	if strings.Count(s[:i], ":") > 0 && !strings.Contains(s[:i], "/") {
		return "", "", fmt.Errorf("%q: write an IPv6 address with a port in brackets, e.g. [2001:db8::1]:443", s)
	}
	return s[:i], s[i+1:], nil
}

func parseRulePort(p string) (int, error) {
	if p == "*" {
		return 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535 (or * for any port)", p)
	}
	return n, nil
}

// parseRuleHost fills r from the host part: an IP, a CIDR or a name.
func parseRuleHost(r EgressRule, h string) (EgressRule, error) {
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return r, fmt.Errorf("%q: an address with a zone cannot be a rule", h)
		}
		a = a.Unmap()
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
		return r, nil
	}
	if strings.Contains(h, "/") {
		p, err := netip.ParsePrefix(h)
		if err != nil {
			return r, fmt.Errorf("%q is not a valid CIDR", h)
		}
		if m := p.Masked(); m != p {
			return r, fmt.Errorf("%q has bits set after the prefix; write %s", h, m)
		}
		r.Prefix = p
		return r, nil
	}
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		r.Wildcard, name = true, rest
	}
	if !ValidHostName(name) {
		if h == "*" || strings.Contains(name, "*") {
			return r, fmt.Errorf("%q: a wildcard is only allowed as a whole first label (*.example.com); list the hosts the role needs", h)
		}
		return r, fmt.Errorf("%q is not a valid host name", h)
	}
	r.Host = name
	return r, nil
}

// ValidHostName reports whether s is a lower-case DNS name: labels of
// letters, digits, - and _, at most 253 characters.
func ValidHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

func (e *Egress) validate(ps *problems, p fieldPath) {
	for _, list := range []struct {
		field string
		rules []string
	}{{"allow", e.Allow}, {"deny", e.Deny}} {
		for i, s := range list.rules {
			if _, err := ParseEgressRule(s); err != nil {
				ps.add(p.with(list.field).index(i), egressRuleHint, "%v", err)
			}
		}
	}
}

func (b *BrokerEgress) validate(ps *problems, p fieldPath) {
	if b.LeakAction != "" && b.LeakAction != LeakActionRevoke && b.LeakAction != LeakActionRefuse {
		ps.add(p.with("leak_action"), `use "revoke" (the default) or "refuse"`, "%q is not a leak action", b.LeakAction)
	}
	for _, name := range slices.Sorted(maps.Keys(b.Hosts)) {
		fp := p.with("hosts", name)
		n := strings.TrimSuffix(strings.ToLower(name), ".")
		if _, err := netip.ParseAddr(n); err == nil || !ValidHostName(n) {
			ps.add(fp, "use a host name such as minio.test (no wildcard, no address)", "%q is not a host name", name)
		}
		if a, err := netip.ParseAddr(b.Hosts[name]); err != nil || a.Zone() != "" {
			ps.add(fp, "map the name to one IPv4 or IPv6 address, e.g. 127.0.0.1", "%q is not an address", b.Hosts[name])
		}
	}
}

// EgressHosts returns broker.egress.hosts parsed: lower-case names without
// a trailing dot, each to its address. Call it on a validated config.
func (c *Config) EgressHosts() map[string]netip.Addr {
	out := make(map[string]netip.Addr, len(c.Broker.Egress.Hosts))
	for name, v := range c.Broker.Egress.Hosts {
		if a, err := netip.ParseAddr(v); err == nil {
			out[strings.TrimSuffix(strings.ToLower(name), ".")] = a.Unmap()
		}
	}
	return out
}
