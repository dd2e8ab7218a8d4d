package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/credbroker/credbroker/configs"
)

// rule is a parsed config rule and where it came from.
type rule struct {
	configs.EgressRule
	// source is the config entry, e.g. "roles.dev.egress.allow[2]" or
	// "provider vault (providers.vault.address)".
	source   string
	provider bool
}

// String names the rule for denials and audit records.
func (r rule) String() string {
	if r.provider {
		return r.source
	}
	return fmt.Sprintf("%s %q", r.source, r.Text)
}

func (r rule) portOK(port int) bool { return r.Port == 0 || r.Port == port }

// matchName reports whether the name rule covers host:port.
func (r rule) matchName(host string, port int) bool {
	if r.IsIP() || !r.portOK(port) {
		return false
	}
	if r.Wildcard {
		return strings.HasSuffix(host, "."+r.Host)
	}
	return host == r.Host
}

// matchAddr reports whether the IP rule covers a:port.
func (r rule) matchAddr(a netip.Addr, port int) bool {
	return r.IsIP() && r.portOK(port) && r.Prefix.Contains(a)
}

// Policy is one role's egress policy: its allow and deny rules and its
// providers' endpoints, with the resolver that turns names into the
// addresses the gateway dials.
type Policy struct {
	role      string
	allow     []rule // the role's allow rules, then its providers' endpoints
	deny      []rule
	resolver  *Resolver
	allowPath string
}

// NewPolicy builds role's policy from a validated config. It returns nil
// and no error when the role has no egress block.
func NewPolicy(cfg *configs.Config, role string, res *Resolver) (*Policy, error) {
	r, ok := cfg.Roles[role]
	if !ok {
		return nil, fmt.Errorf("egress: unknown role %q", role)
	}
	if r.Egress == nil {
		return nil, nil
	}
	p := &Policy{role: role, resolver: res, allowPath: "roles." + role + ".egress.allow"}
	lists := []struct {
		field string
		texts []string
		into  *[]rule
	}{{"allow", r.Egress.Allow, &p.allow}, {"deny", r.Egress.Deny, &p.deny}}
	for _, l := range lists {
		for i, s := range l.texts {
			er, err := configs.ParseEgressRule(s)
			if err != nil {
				return nil, fmt.Errorf("egress: roles.%s.egress.%s[%d]: %w", role, l.field, i, err)
			}
			*l.into = append(*l.into, rule{EgressRule: er, source: fmt.Sprintf("roles.%s.egress.%s[%d]", role, l.field, i)})
		}
	}
	eps, err := cfg.EgressEndpoints(r)
	if err != nil {
		return nil, err
	}
	for _, e := range eps {
		p.allow = append(p.allow, rule{EgressRule: e.Rule, provider: true,
			source: fmt.Sprintf("provider %s (%s %s)", e.Provider, e.Source, e.Rule.Text)})
	}
	return p, nil
}

// Role is the policy's role.
func (p *Policy) Role() string { return p.role }

// Decision is the policy's answer for one destination.
type Decision struct {
	Allowed bool   `json:"allowed"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	// Rule names what decided: the allow rule or provider endpoint that
	// allowed, the deny rule that refused, or "" when no rule allowed.
	Rule string `json:"rule,omitempty"`
	// Reason says what was refused and why ("" when allowed).
	Reason string `json:"reason,omitempty"`
	// Fix says which config entry would allow it ("" when none would).
	Fix string `json:"fix,omitempty"`
	// Addrs are the checked addresses, in the order to dial them.
	Addrs []netip.Addr `json:"addresses,omitempty"`
}

// Target is "host:port" as the client asked for it.
func (d Decision) Target() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

func (p *Policy) deny1(d Decision, reason, rule, fixRule string) Decision {
	d.Allowed, d.Reason, d.Rule, d.Addrs = false, reason, rule, nil
	if fixRule != "" {
		d.Fix = fmt.Sprintf("allow with %s: %q", p.allowPath, fixRule)
	}
	return d
}

// Check decides whether the session may reach host:port. Names are
// resolved only when a name rule allows them (so the gateway does no DNS
// lookup for a name nobody allowed), through the hosts map first; the
// addresses returned are the only ones the gateway dials.
func (p *Policy) Check(ctx context.Context, host string, port int) Decision {
	host = normalizeHost(host)
	d := Decision{Host: host, Port: port}
	if port < 1 || port > 65535 {
		return p.deny1(d, fmt.Sprintf("port %d is not a TCP port", port), "", "")
	}
	ip, err := netip.ParseAddr(host)
	isIP := err == nil && ip.Zone() == ""
	if !isIP && !configs.ValidHostName(host) {
		return p.deny1(d, fmt.Sprintf("%q is not a host name", clip(host)), "", "")
	}
	target := d.Target()
	if !isIP {
		for _, r := range p.deny {
			if r.matchName(host, port) {
				return p.deny1(d, target+" is denied", r.String(), "")
			}
		}
	}
	var byName *rule
	for i := range p.allow {
		if !isIP && p.allow[i].matchName(host, port) {
			byName = &p.allow[i]
			break
		}
	}
	if !isIP && byName == nil {
		return p.deny1(d, "no rule allows "+target, "", target)
	}
	addrs, fromHosts := []netip.Addr{ip.Unmap()}, false
	if !isIP {
		if addrs, fromHosts, err = p.resolver.Resolve(ctx, host); err != nil {
			return p.deny1(d, fmt.Sprintf("%s: %v", target, err), byName.String(), "")
		}
	}
	return p.checkAddrs(d, byName, addrs, fromHosts)
}

// checkAddrs keeps the addresses that no deny rule covers and that are
// public or named by a rule; the first refusal is reported when none is
// left.
func (p *Policy) checkAddrs(d Decision, byName *rule, addrs []netip.Addr, fromHosts bool) Decision {
	var refused *Decision
	refuse := func(reason, rule, fix string) {
		if refused == nil {
			r := p.deny1(d, reason, rule, fix)
			refused = &r
		}
	}
	for _, a := range addrs {
		at := net.JoinHostPort(a.String(), strconv.Itoa(d.Port))
		what := d.Target()
		if what != at {
			what += " (" + a.String() + ")"
		}
		if r, ok := p.firstAddr(p.deny, a, d.Port); ok {
			refuse(what+" is denied", r.String(), "")
			continue
		}
		ipRule, hasIP := p.firstAddr(p.allow, a, d.Port)
		decided := byName
		if byName == nil {
			if !hasIP {
				refuse("no rule allows "+at, "", at)
				continue
			}
			decided = &ipRule
		}
		if block, kind, ok := special(a); ok {
			named := hasIP && (ipRule.provider || names(ipRule.Prefix, block, a))
			// A rule naming exactly a host the operator mapped in
			// broker.egress.hosts names its address too.
			mapped := fromHosts && byName != nil && !byName.Wildcard
			if !named && !decided.provider && !mapped {
				refuse(fmt.Sprintf("%s is %s", what, kind), "", at)
				continue
			}
		}
		if len(d.Addrs) == 0 {
			d.Rule = decided.String()
		}
		d.Addrs = append(d.Addrs, a)
	}
	if len(d.Addrs) == 0 {
		if refused == nil {
			return p.deny1(d, d.Target()+" has no address", "", "")
		}
		return *refused
	}
	d.Allowed = true
	return d
}

func (p *Policy) firstAddr(rs []rule, a netip.Addr, port int) (rule, bool) {
	for _, r := range rs {
		if r.matchAddr(a, port) {
			return r, true
		}
	}
	return rule{}, false
}

// normalizeHost lower-cases a host, drops a trailing dot and IPv6
// brackets.
func normalizeHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
