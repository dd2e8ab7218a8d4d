package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kubernetes token limits.
const (
	// MinKubeTokenTTL is the shortest expirationSeconds the TokenRequest API
	// accepts.
	MinKubeTokenTTL = 10 * time.Minute
	// DefaultKubeTokenTTL caps one token's life when a role sets no
	// token_ttl; longer sessions get fresh tokens from the refresher.
	DefaultKubeTokenTTL = time.Hour
)

var (
	// kubeLabel is an RFC 1123 label: namespaces and object names.
	kubeLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// kubeWord is an RBAC verb, resource (with optional /subresource) or
	// API group, or "*".
	kubeWord = regexp.MustCompile(`^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[a-z0-9*]+)?)$`)
)

// KubeProvider is how the broker reaches the Kubernetes API server.
type KubeProvider struct {
	// Kubeconfig is the broker's own kubeconfig (default $KUBECONFIG when
	// it names one file, else ~/.kube/config). Sessions never see it.
	Kubeconfig string `yaml:"kubeconfig"`
	// Context selects a context in Kubeconfig (default its current-context).
	Context string `yaml:"context"`
	// Namespaces lists namespaces that revoke --all and crash recovery sweep
	// besides those the roles name; list namespaces of roles you removed.
	Namespaces []string `yaml:"namespaces"`
}

// KubeRole is a role's Kubernetes block: a service account per session in
// Namespace, bound to exactly one of Role, ClusterRole or inline Rules.
type KubeRole struct {
	// Namespace holds the session's ServiceAccount and RoleBinding,
	// and is the kubeconfig context's default namespace.
	Namespace string `yaml:"namespace"`
	// Role is an existing Role in Namespace to bind.
	Role string `yaml:"role"`
	// ClusterRole is an existing ClusterRole to bind, in Namespace only
	// (a RoleBinding) unless ClusterWide is set.
	ClusterRole string `yaml:"cluster_role"`
	// ClusterWide binds ClusterRole with a ClusterRoleBinding: the grant
	// then holds in every namespace.
	ClusterWide bool `yaml:"cluster_wide"`
	// Rules are inline RBAC rules; the broker keeps one Role per credbroker
	// role (credbroker-role-<name>) in sync with them.
	Rules []KubeRule `yaml:"rules"`
	// Audiences of the session's tokens (default: the API server's own).
	Audiences []string `yaml:"audiences"`
	// TokenTTL caps one token's life (default 1h, at least 10m); the
	// refresher requests a new token before it runs out.
	TokenTTL Duration `yaml:"token_ttl"`
	// Delivery overrides the role's delivery for the service-account token.
	Delivery string `yaml:"delivery"`
}

// KubeRule is one RBAC PolicyRule.
type KubeRule struct {
	// APIGroups default to [""], the core group (pods, configmaps...).
	APIGroups []string `yaml:"api_groups"`
	// Resources such as pods or pods/log.
	Resources []string `yaml:"resources"`
	// Verbs such as get, list, watch.
	Verbs []string `yaml:"verbs"`
	// ResourceNames narrows the rule to named objects.
	ResourceNames []string `yaml:"resource_names"`
}

// BindsClusterRole reports whether the role binds a ClusterRole.
func (r *KubeRole) BindsClusterRole() bool { return r.ClusterRole != "" }

// Source names what the role binds, for messages: `Role "x"`,
// `ClusterRole "x"` or `inline rules`.
func (r *KubeRole) Source() string {
	switch {
	case r.Role != "":
		return fmt.Sprintf("Role %q", r.Role)
	case r.ClusterRole != "":
		return fmt.Sprintf("ClusterRole %q", r.ClusterRole)
	default:
		return "inline rules"
	}
}

// KubeNamespaces returns every namespace the Kubernetes provider manages:
// providers.kube.namespaces and the namespace of each role with a kube
// block, sorted and without duplicates.
func (c *Config) KubeNamespaces() []string {
	var ns []string
	if c.Providers.Kube != nil {
		ns = append(ns, c.Providers.Kube.Namespaces...)
	}
	for _, r := range c.Roles {
		if r.Kube != nil && r.Kube.Namespace != "" {
			ns = append(ns, r.Kube.Namespace)
		}
	}
	slices.Sort(ns)
	return slices.Compact(ns)
}

func (k *KubeProvider) applyDefaults() {
	if k.Kubeconfig != "" {
		return
	}
	if env := os.Getenv("KUBECONFIG"); filepath.IsAbs(env) && !strings.Contains(env, string(filepath.ListSeparator)) {
		k.Kubeconfig = env
		return
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		k.Kubeconfig = filepath.Join(home, ".kube", "config")
	}
}

func (r *KubeRole) applyDefaults() {
	if r.TokenTTL == 0 {
		r.TokenTTL = Duration(DefaultKubeTokenTTL)
	}
	for i := range r.Rules {
		if r.Rules[i].APIGroups == nil {
			r.Rules[i].APIGroups = []string{""}
		}
	}
}

func (k *KubeProvider) validate(ps *problems, p fieldPath) {
	if k.Kubeconfig == "" {
		ps.add(p.with("kubeconfig"), "set kubeconfig to the broker's own kubeconfig file, or set $KUBECONFIG or $HOME",
			"no default: $KUBECONFIG does not name one absolute file and $HOME is not set")
	}
	absPath(ps, p.with("kubeconfig"), k.Kubeconfig)
	for i, ns := range k.Namespaces {
		kubeName(ps, p.with("namespaces").index(i), ns, "namespace")
	}
}

func (r *KubeRole) validate(ps *problems, p fieldPath) {
	if r.Namespace == "" {
		ps.add(p.with("namespace"), "set the namespace the session's service account lives in", "missing")
	} else {
		kubeName(ps, p.with("namespace"), r.Namespace, "namespace")
	}
	var set []string
	if r.Role != "" {
		set = append(set, "role")
		kubeRBACName(ps, p.with("role"), r.Role)
	}
	if r.ClusterRole != "" {
		set = append(set, "cluster_role")
		kubeRBACName(ps, p.with("cluster_role"), r.ClusterRole)
	}
	if len(r.Rules) > 0 {
		set = append(set, "rules")
	}
	if len(set) != 1 {
		ps.add(p, "keep exactly one of role, cluster_role and rules",
			"%d permission sources are set (%s)", len(set), strings.Join(set, ", "))
	}
	if r.ClusterWide && r.ClusterRole == "" {
		ps.add(p.with("cluster_wide"), "set cluster_role, or remove cluster_wide",
			"cluster_wide needs a cluster_role to bind")
	}
	for i, rule := range r.Rules {
		rule.validate(ps, p.with("rules").index(i))
	}
	for i, a := range r.Audiences {
		if strings.TrimSpace(a) == "" {
			ps.add(p.with("audiences").index(i), "remove the empty entry", "empty audience")
		}
	}
	if d := r.TokenTTL.D(); d < MinKubeTokenTTL || d > MaxRoleTTL {
		ps.add(p.with("token_ttl"), "use a duration from 10m (the TokenRequest minimum) to 12h",
			"%s is outside the 10m..12h range", r.TokenTTL)
	}
}

func (k *KubeRule) validate(ps *problems, p fieldPath) {
	lists := []struct {
		field    string
		vals     []string
		required bool
	}{
		{"api_groups", k.APIGroups, false},
		{"resources", k.Resources, true},
		{"verbs", k.Verbs, true},
	}
	for _, l := range lists {
		if l.required && len(l.vals) == 0 {
			ps.add(p.with(l.field), fmt.Sprintf("list the %s the rule allows, e.g. %s", l.field, ruleExample(l.field)), "missing")
		}
		for i, v := range l.vals {
			if (v == "" && l.field == "api_groups") || kubeWord.MatchString(v) {
				continue
			}
			ps.add(p.with(l.field).index(i), fmt.Sprintf("write it as Kubernetes RBAC does, e.g. %s", ruleExample(l.field)),
				"%q is not a valid entry", v)
		}
	}
	for i, n := range k.ResourceNames {
		if n == "" {
			ps.add(p.with("resource_names").index(i), "remove the empty entry", "empty resource name")
		}
	}
}

func ruleExample(field string) string {
	switch field {
	case "api_groups":
		return `["", apps]`
	case "resources":
		return "[pods, pods/log]"
	default:
		return "[get, list, watch]"
	}
}

// kubeName requires an RFC 1123 label (namespaces).
func kubeName(ps *problems, p fieldPath, v, what string) {
	if !kubeLabel.MatchString(v) {
		ps.add(p, "use 1-63 lower-case letters, digits and -, starting and ending with a letter or digit",
			"%q is not a valid %s name", v, what)
	}
}

// kubeRBACName requires what Kubernetes accepts as a Role or ClusterRole
// name: a path segment (so "system:aggregate-to-view" is fine).
func kubeRBACName(ps *problems, p fieldPath, v string) {
	if v == "." || v == ".." || strings.ContainsAny(v, "/%") || strings.TrimSpace(v) != v {
		ps.add(p, "name the Role or ClusterRole exactly as kubectl get lists it",
			"%q is not a valid Role or ClusterRole name", v)
	}
}
