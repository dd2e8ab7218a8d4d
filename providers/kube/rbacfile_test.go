package kube_test

import (
	"io/fs"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
)

// shippedRules decodes every Role and ClusterRole of the shipped broker
// RBAC file, by name.
func shippedRules(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	manifest, err := kubetest.BrokerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]rbacv1.PolicyRule{}
	for i, doc := range strings.Split(manifest, "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s document %d: %v", kubetest.BrokerRBACFile(), i, err)
		}
		switch o := obj.(type) {
		case *rbacv1.Role:
			out[o.Name] = o.Rules
		case *rbacv1.ClusterRole:
			out[o.Name] = o.Rules
		}
	}
	return out
}

// grants lists "verb resource[/name]" for every rule of rs.
func grants(rs []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rs {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				if len(r.ResourceNames) == 0 {
					out = append(out, v+" "+res)
				}
				for _, n := range r.ResourceNames {
					out = append(out, v+" "+res+"/"+n)
				}
			}
		}
	}
	return out
}

// TestShippedRBACFile checks configs/examples/kube/broker-rbac.yaml
// without a server: no rule names Secrets or a wildcard; the required
// Role has no verb that writes Roles or escalates; escalate, update and
// bind of inline-rule Roles are limited by name; and the names match the
// roles of configs/examples/kube.yaml.
func TestShippedRBACFile(t *testing.T) {
	rules := shippedRules(t)
	for name, rs := range rules {
		for _, r := range rs {
			for _, s := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
				if slices.Contains(s, "*") {
					t.Errorf("%s: wildcard in %+v", name, r)
				}
			}
			if slices.ContainsFunc(r.Resources, func(res string) bool { return strings.HasPrefix(res, "secrets") }) {
				t.Errorf("%s grants %v on secrets", name, r.Verbs)
			}
		}
	}
	required := grants(rules["credbroker-broker"])
	for _, g := range required {
		if verb, res, _ := strings.Cut(g, " "); res == "roles" && verb != "get" {
			t.Errorf("the required Role grants %q; only get on roles (the rest is the optional inline-rules Role)", g)
		}
		if strings.HasPrefix(g, "escalate ") {
			t.Errorf("the required Role grants %q", g)
		}
	}
	inline := grants(rules[inlineRulesPart])
	for _, g := range inline {
		verb, res, _ := strings.Cut(g, " ")
		if (verb == "escalate" || verb == "update" || verb == "bind" || verb == "delete") && !strings.HasPrefix(res, "roles/credbroker-role-") {
			t.Errorf("the inline-rules Role grants %q; want it limited to credbroker-role-<role> names", g)
		}
	}

	b, err := fs.ReadFile(configs.Examples(), "kube.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Parse("kube.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range cfg.Roles {
		kr := r.Kube
		if kr == nil {
			continue
		}
		var want []string
		var in []string
		switch {
		case kr.Role != "":
			want, in = []string{"bind roles/" + kr.Role}, required
		case kr.ClusterRole != "":
			want, in = []string{"bind clusterroles/" + kr.ClusterRole}, required
			in = append(in, grants(rules[clusterRolesPart])...)
			want = append(want, "get clusterroles/"+kr.ClusterRole)
		default:
			n := kube.InlineRoleName(name)
			want, in = []string{"update roles/" + n, "escalate roles/" + n, "bind roles/" + n}, inline
		}
		for _, w := range want {
			if !slices.Contains(in, w) {
				t.Errorf("role %s of configs/examples/kube.yaml needs %q, which the shipped broker RBAC does not grant", name, w)
			}
		}
	}
}
