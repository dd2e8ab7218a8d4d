package configs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

var (
	// roleName is a role's key: it becomes part of lease ids, token
	// metadata and Kubernetes object names, so it is DNS-label-like.
	roleName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// secretName becomes a file name under vault/secrets.
	secretName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// sortedRoleNames returns the role names in order, so errors are stable.
func sortedRoleNames(roles map[string]Role) []string {
	return slices.Sorted(maps.Keys(roles))
}

// RoleNames lists the configured roles in order.
func (c *Config) RoleNames() []string { return sortedRoleNames(c.Roles) }

func (c *Config) validateRoles(ps *problems) {
	if len(c.Roles) == 0 {
		ps.add(fieldPath{"roles"}, "add a role (see credbroker config example)", "no roles are defined")
	}
	for _, name := range sortedRoleNames(c.Roles) {
		r := c.Roles[name]
		p := fieldPath{"roles", name}
		if !roleName.MatchString(name) {
			ps.add(p, "use 1-63 lower-case letters, digits and -, starting with a letter or digit",
				"%q is not a valid role name", name)
		}
		r.validateTTL(ps, p)
		r.validateAccess(ps, p)
		c.validateDelivery(ps, r, p)
		if len(r.ProviderNames()) == 0 {
			ps.add(p, "add a provider block (vault, aws, ...) with what the session needs",
				"the role grants nothing: it has no provider block")
			continue
		}
		if r.Vault != nil {
			if c.Providers.Vault == nil {
				ps.add(p.with("vault"), "add a providers.vault block with the broker's Vault address and login",
					"the role uses vault but providers.vault is not configured")
			}
			r.Vault.validate(ps, p.with("vault"))
		}
		if r.AWS != nil {
			if c.Providers.AWS == nil {
				ps.add(p.with("aws"), "add a providers.aws block with the broker's AWS identity and STS endpoint",
					"the role uses aws but providers.aws is not configured")
			}
			r.AWS.validate(ps, p.with("aws"))
		}
		if r.Egress != nil {
			r.Egress.validate(ps, p.with("egress"))
		}
		if r.Kube != nil {
			if c.Providers.Kube == nil {
				ps.add(p.with("kube"), "add a providers.kube block with the broker's kubeconfig",
					"the role uses kube but providers.kube is not configured")
			}
			r.Kube.validate(ps, p.with("kube"))
		}
	}
}

// validateTTL checks ttl and max_ttl after defaults: an unset ttl is then
// 15m or max_ttl when that is shorter, so a max_ttl below the minimum is
// reported once, on max_ttl.
func (r *Role) validateTTL(ps *problems, p fieldPath) {
	minimum := Duration(MinSessionTTL)
	maxOK := false
	switch {
	case r.MaxTTL <= 0:
		ps.add(p.with("max_ttl"), "use a positive duration such as 1h", "%s is not positive", r.MaxTTL)
	case r.MaxTTL < minimum:
		ps.add(p.with("max_ttl"), fmt.Sprintf("raise max_ttl (and ttl) to %s or more", minimum),
			"%s is below the %s minimum session; no session of this role could start", r.MaxTTL, minimum)
	case r.MaxTTL > Duration(MaxRoleTTL) && r.MaxTTL != r.TTL:
		// max_ttl defaulted from a too-long ttl is reported once, on ttl.
		ps.add(p.with("max_ttl"), "lower max_ttl to 12h or less", "%s exceeds the %s limit",
			r.MaxTTL, Duration(MaxRoleTTL))
	default:
		maxOK = true
	}
	switch {
	case r.TTL <= 0:
		ps.add(p.with("ttl"), "use a positive duration such as 15m", "%s is not positive", r.TTL)
	case r.TTL < minimum && (maxOK || r.TTL != r.MaxTTL):
		ps.add(p.with("ttl"), fmt.Sprintf("use %s or more, such as 15m", minimum),
			"%s is below the %s minimum session", r.TTL, minimum)
	case r.TTL > Duration(MaxRoleTTL):
		ps.add(p.with("ttl"), "lower ttl (and max_ttl) to 12h or less", "%s exceeds the %s limit",
			r.TTL, Duration(MaxRoleTTL))
	case maxOK && r.MaxTTL < r.TTL:
		ps.add(p.with("max_ttl"), "raise max_ttl or lower ttl", "%s is shorter than ttl %s", r.MaxTTL, r.TTL)
	}
}

func (v *VaultRole) validate(ps *problems, p fieldPath) {
	if len(v.Policies) == 0 {
		ps.add(p.with("policies"), "list the Vault policies the session token carries, e.g. [agent-readonly]",
			"no policies")
	}
	for i, pol := range v.Policies {
		switch {
		case strings.TrimSpace(pol) == "":
			ps.add(p.with("policies").index(i), "remove the empty entry", "empty policy name")
		case strings.EqualFold(strings.TrimSpace(pol), "root"):
			ps.add(p.with("policies").index(i), "write a narrow policy for the role instead",
				"the root policy is never handed to a session")
		}
	}
	seen := map[string]int{}
	for i, s := range v.Secrets {
		sp := p.with("secrets").index(i)
		if first, dup := seen[s.Name]; dup && s.Name != "" {
			ps.add(sp.with("name"), "give each secret of a role its own name",
				"%q is already used by secrets[%d]", s.Name, first)
		} else {
			seen[s.Name] = i
		}
		s.validate(ps, sp)
	}
}

func (s *VaultSecret) validate(ps *problems, p fieldPath) {
	if !secretName.MatchString(s.Name) {
		ps.add(p.with("name"), "use 1-64 letters, digits, - and _ (it becomes vault/secrets/<name>.json)",
			"%q is not a valid secret name", s.Name)
	}
	switch {
	case s.Path == "":
		ps.add(p.with("path"), `set the Vault API path, e.g. "secret/data/app"`, "missing")
	case strings.HasPrefix(s.Path, "/"):
		ps.add(p.with("path"), `write it without the leading "/" or "v1/", e.g. "secret/data/app"`,
			"%q is absolute", s.Path)
	}
	switch s.Method {
	case "read", "write":
	default:
		ps.add(p.with("method"), "use read (the default) or write", "unknown method %q", s.Method)
	}
	if s.Data != nil && s.Method == "read" {
		ps.add(p.with("data"), "set method: write, or remove data", "data is only sent with method write")
	}
}
