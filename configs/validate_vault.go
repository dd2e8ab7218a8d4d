package configs

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// envName is a portable environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (v *VaultProvider) validate(ps *problems, p fieldPath) {
	validateAddress(ps, p.with("address"), v.Address)
	absPath(ps, p.with("ca_cert"), v.CACert)
	v.Auth.validate(ps, p.with("auth"))
	if v.TokenRole == "" {
		ps.add(p.with("token_role"), "name the token role session tokens are created through",
			"must not be empty")
	}
	if v.EpochTTL <= 0 {
		ps.add(p.with("epoch_ttl"), "use a positive duration such as 24h", "%s is not positive", v.EpochTTL)
	}
}

func validateAddress(ps *problems, p fieldPath, addr string) {
	const hint = "set address (or $VAULT_ADDR) to a URL such as https://vault.example.com:8200"
	if addr == "" {
		ps.add(p, hint, "not set")
		return
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.add(p, hint, "%q is not an http(s) URL", addr)
	}
}

func (a *VaultAuth) validate(ps *problems, p fieldPath) {
	var set []string
	if a.TokenEnv != "" {
		set = append(set, "token_env")
		envVar(ps, p.with("token_env"), a.TokenEnv)
	}
	if a.TokenFile != "" {
		set = append(set, "token_file")
		absPath(ps, p.with("token_file"), a.TokenFile)
	}
	if a.AppRole != nil {
		set = append(set, "approle")
		a.AppRole.validate(ps, p.with("approle"))
	}
	if len(set) != 1 {
		ps.add(p, "keep exactly one of token_env, token_file, approle",
			"%d login methods are set (%s)", len(set), strings.Join(set, ", "))
	}
}

func (a *AppRole) validate(ps *problems, p fieldPath) {
	if a.RoleID == "" {
		ps.add(p.with("role_id"), "set role_id to the AppRole's role id (vault read auth/approle/role/<name>/role-id)",
			"missing")
	}
	switch {
	case a.SecretIDFile == "" && a.SecretIDEnv == "":
		ps.add(p, "set secret_id_file or secret_id_env", "no secret_id source")
	case a.SecretIDFile != "" && a.SecretIDEnv != "":
		ps.add(p.with("secret_id_env"), "keep only one of secret_id_file and secret_id_env",
			"both secret_id_file and secret_id_env are set")
	}
	absPath(ps, p.with("secret_id_file"), a.SecretIDFile)
	if a.SecretIDEnv != "" {
		envVar(ps, p.with("secret_id_env"), a.SecretIDEnv)
	}
	if strings.Trim(a.Mount, "/") != a.Mount {
		ps.add(p.with("mount"), fmt.Sprintf("write it without slashes, e.g. %q", strings.Trim(a.Mount, "/")),
			"%q has a leading or trailing slash", a.Mount)
	}
}

// envVar requires name to be a valid environment variable name.
func envVar(ps *problems, p fieldPath, name string) {
	if !envName.MatchString(name) {
		ps.add(p, "name a variable such as VAULT_TOKEN (letters, digits, _; not starting with a digit)",
			"%q is not an environment variable name", name)
	}
}

// validateEpoch requires the epoch token to outlive every vault session:
// session tokens are its children and die with it.
func (c *Config) validateEpoch(ps *problems, v *VaultProvider) {
	if v.EpochTTL <= 0 {
		return
	}
	var longest Duration
	var longestRole string
	for _, name := range sortedRoleNames(c.Roles) {
		r := c.Roles[name]
		if r.Vault != nil && r.MaxTTL > longest {
			longest, longestRole = r.MaxTTL, name
		}
	}
	if need := longest + Duration(EpochMargin); longestRole != "" && v.EpochTTL <= need {
		ps.add(fieldPath{"providers", "vault", "epoch_ttl"},
			fmt.Sprintf("raise epoch_ttl above %s (max_ttl plus the %s rotation margin) or lower that role's max_ttl", need, Duration(EpochMargin)),
			"%s is not longer than role %s's max_ttl %s plus %s; session tokens are children of the epoch token and would die with it",
			v.EpochTTL, longestRole, longest, Duration(EpochMargin))
	}
}
