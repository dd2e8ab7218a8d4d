package configs

import (
	"fmt"
	"regexp"
	"strings"
)

// Delivery values: how a session gets a provider's credentials.
const (
	// DeliveryFiles writes the real, short-lived credentials into the
	// session dir (the default).
	DeliveryFiles = "files"
	// DeliveryProxy writes placeholders of the same shape; the session's
	// egress gateway puts the real credential on each request to the
	// hosts it is bound to (docs/proxy-mode.md).
	DeliveryProxy = "proxy"
)

// Inject binds one secret read from Vault to hosts (delivery: proxy).
type Inject struct {
	// Env is the variable the sandbox finds the placeholder in, e.g.
	// ANTHROPIC_API_KEY.
	Env string `yaml:"env"`
	// Path is the Vault API path the session token reads at start, e.g.
	// "secret/data/anthropic" (KV v2) or "secret/anthropic" (KV v1).
	Path string `yaml:"path"`
	// Field is the key of the value under the response's data (KV v2's
	// data.data is looked into too).
	Field string `yaml:"field"`
	// Hosts are the egress rules (host:port, *.suffix:port) whose requests
	// get the real value; each must be allowed by the role's egress.allow.
	Hosts []string `yaml:"hosts"`
	// Header puts the value on a header: "Name: template" with {} where the
	// value goes, e.g. "Authorization: Bearer {}" or "x-api-key: {}".
	Header string `yaml:"header"`
	// BasicUser puts the value as the password of HTTP basic auth with
	// this user name (a git forge token, a package registry).
	BasicUser string `yaml:"basic_user"`
	// Query puts the value in this query parameter.
	Query string `yaml:"query"`
}

// DeliveryFor returns the delivery of provider ("vault", "aws", "kube")
// in r: the provider block's own, else the role's, else files.
func (r Role) DeliveryFor(provider string) string {
	d := ""
	switch provider {
	case "vault":
		if r.Vault != nil {
			d = r.Vault.Delivery
		}
	case "aws":
		if r.AWS != nil {
			d = r.AWS.Delivery
		}
	case "kube":
		if r.Kube != nil {
			d = r.Kube.Delivery
		}
	}
	if d == "" {
		d = r.Delivery
	}
	if d == "" {
		d = DeliveryFiles
	}
	return d
}

// UsesProxy reports whether any of r's credentials go through the gateway
// (a provider with delivery proxy, or an inject entry).
func (r Role) UsesProxy() bool {
	if len(r.Inject) > 0 {
		return true
	}
	for _, p := range r.ProviderNames() {
		if r.DeliveryFor(p) == DeliveryProxy {
			return true
		}
	}
	return false
}

// headerName is an HTTP token (RFC 9110 field-name).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")

// forbiddenInjectHeaders are headers the gateway owns or that make no
// sense to inject.
var forbiddenInjectHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
	"upgrade": true, "te": true, "trailer": true, "proxy-authorization": true, "x-amz-date": true,
	"x-amz-security-token": true, "x-amz-content-sha256": true, "x-vault-token": true,
}

// ParseInjectHeader splits "Name: template" and checks both parts.
func ParseInjectHeader(s string) (name, tmpl string, err error) {
	name, tmpl, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf(`%q is not "Name: template"`, s)
	}
	name, tmpl = strings.TrimSpace(name), strings.TrimSpace(tmpl)
	switch {
	case !headerName.MatchString(name):
		return "", "", fmt.Errorf("%q is not a header name (an HTTP token: letters, digits and !#$%%&'*+.^_`|~-)", name)
	case forbiddenInjectHeaders[strings.ToLower(name)]:
		return "", "", fmt.Errorf("header %s is set by the gateway or the protocol, not by inject", name)
	case strings.Count(tmpl, "{}") != 1:
		return "", "", fmt.Errorf("the template %q must hold {} exactly once, where the value goes", tmpl)
	case strings.ContainsAny(tmpl, "\r\n\x00"):
		return "", "", fmt.Errorf("the template holds a control character")
	}
	return name, tmpl, nil
}

// validateDelivery checks delivery values, inject entries and what proxy
// delivery needs (an egress block, hosts the egress allows).
func (c *Config) validateDelivery(ps *problems, r Role, p fieldPath) {
	check := func(fp fieldPath, d string) {
		if d != "" && d != DeliveryFiles && d != DeliveryProxy {
			ps.add(fp, `use "files" (the default) or "proxy"`, "%q is not a delivery", d)
		}
	}
	check(p.with("delivery"), r.Delivery)
	if r.Vault != nil {
		check(p.with("vault", "delivery"), r.Vault.Delivery)
		if r.DeliveryFor("vault") == DeliveryProxy && len(r.Vault.Secrets) > 0 {
			ps.add(p.with("vault", "secrets"), "bind each value to the hosts that need it with an inject entry, or set vault.delivery: files",
				"vault.secrets would put real values in the sandbox, which delivery: proxy promises not to")
		}
	}
	if r.AWS != nil {
		check(p.with("aws", "delivery"), r.AWS.Delivery)
	}
	if r.Kube != nil {
		check(p.with("kube", "delivery"), r.Kube.Delivery)
	}
	if !r.UsesProxy() {
		return
	}
	if r.Egress == nil {
		ps.add(p.with("delivery"), "add an egress block to the role (the gateway is what puts the real credentials on requests)",
			"delivery: proxy (or inject) needs the role's egress gateway, and the role has no egress block")
	}
	if len(r.Inject) > 0 && r.Vault == nil {
		ps.add(p.with("inject"), "add a vault block to the role: inject values are read with the session's Vault token",
			"inject needs the role's vault block")
	}
	seen := map[string]int{}
	for i, in := range r.Inject {
		ip := p.with("inject").index(i)
		if first, dup := seen[in.Env]; dup {
			ps.add(ip.with("env"), "give each inject entry its own variable", "%q is already used by inject[%d]", in.Env, first)
		} else {
			seen[in.Env] = i
		}
		c.validateInject(ps, r, in, ip)
	}
}

// validateInject checks one inject entry.
func (c *Config) validateInject(ps *problems, r Role, in Inject, p fieldPath) {
	if !envName.MatchString(in.Env) {
		ps.add(p.with("env"), "use a variable name such as ANTHROPIC_API_KEY", "%q is not an environment variable name", in.Env)
	}
	switch {
	case in.Path == "":
		ps.add(p.with("path"), `set the Vault API path, e.g. "secret/data/anthropic"`, "missing")
	case strings.HasPrefix(in.Path, "/") || strings.Contains(in.Path, ".."):
		ps.add(p.with("path"), `write the path without a leading / and without "..", e.g. "secret/data/anthropic"`, "%q is not a Vault API path", in.Path)
	}
	if in.Field == "" {
		ps.add(p.with("field"), `name the key of the value, e.g. "api_key"`, "missing")
	}
	ways := 0
	for _, s := range []string{in.Header, in.BasicUser, in.Query} {
		if s != "" {
			ways++
		}
	}
	if ways != 1 {
		ps.add(p, `set exactly one of header ("Authorization: Bearer {}"), basic_user or query`,
			"%d ways to put the value on a request are set", ways)
	}
	if in.Header != "" {
		if _, _, err := ParseInjectHeader(in.Header); err != nil {
			ps.add(p.with("header"), `write "Name: template", e.g. "Authorization: Bearer {}" or "x-api-key: {}"`, "%v", err)
		}
	}
	if in.Query != "" && !headerName.MatchString(in.Query) {
		ps.add(p.with("query"), "use a plain parameter name such as key", "%q is not a query parameter name", in.Query)
	}
	if in.BasicUser != "" && strings.ContainsAny(in.BasicUser, ":\r\n\x00") {
		ps.add(p.with("basic_user"), "use a user name without : or control characters", "%q cannot be a basic-auth user", in.BasicUser)
	}
	if len(in.Hosts) == 0 {
		ps.add(p.with("hosts"), `list the hosts that get the value, e.g. ["api.anthropic.com:443"]`, "missing")
	}
	for i, h := range in.Hosts {
		hp := p.with("hosts").index(i)
		rule, err := ParseEgressRule(h)
		if err != nil {
			ps.add(hp, egressRuleHint, "%v", err)
			continue
		}
		if rule.IsIP() || rule.Port == 0 {
			ps.add(hp, "bind the value to a host name and one port, e.g. api.example.com:443",
				"%q: a value is bound to names with a port, not to addresses or every port", h)
			continue
		}
		if r.Egress != nil && !egressAllows(r.Egress, rule) {
			ps.add(hp, fmt.Sprintf("add %q to the role's egress.allow, or bind the value to a host it allows", h),
				"%q is not in the role's egress.allow: the sandbox could never reach it", h)
		}
	}
}

// egressAllows reports whether an allow rule of e covers every host and
// the port of rule (and no deny rule names it).
func egressAllows(e *Egress, rule EgressRule) bool {
	for _, s := range e.Deny {
		if d, err := ParseEgressRule(s); err == nil && !d.IsIP() && d.Covers(rule) {
			return false
		}
	}
	for _, s := range e.Allow {
		if a, err := ParseEgressRule(s); err == nil && a.Covers(rule) {
			return true
		}
	}
	return false
}
