package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// need is one permission the broker itself must hold in each managed
// namespace (docs/kubernetes.md lists the same set as a Role).
type need struct {
	verb, group, resource, sub, name string
}

var namespaceNeeds = []need{
	{"create", "", "serviceaccounts", "", ""},
	{"delete", "", "serviceaccounts", "", ""},
	{"deletecollection", "", "serviceaccounts", "", ""},
	{"list", "", "serviceaccounts", "", ""},
	{"create", "", "serviceaccounts", "token", ""},
	{"create", "rbac.authorization.k8s.io", "rolebindings", "", ""},
	{"delete", "rbac.authorization.k8s.io", "rolebindings", "", ""},
	{"deletecollection", "rbac.authorization.k8s.io", "rolebindings", "", ""},
	{"list", "rbac.authorization.k8s.io", "rolebindings", "", ""},
	{"get", "rbac.authorization.k8s.io", "roles", "", ""},
}

// inlineNeeds are what a role with inline rules needs on top, in its
// namespace: the optional inline-rules Role of the shipped RBAC.
func inlineNeeds(roleName string) []need {
	const g = "rbac.authorization.k8s.io"
	name := InlineRoleName(roleName)
	return []need{
		{"create", g, "roles", "", ""},
		{"list", g, "roles", "", ""},
		{"update", g, "roles", "", name},
		{"escalate", g, "roles", "", name},
		{"bind", g, "roles", "", name},
	}
}

// Check verifies that the API server answers and that the broker holds the
// permissions it needs in every managed namespace, and those for inline
// rules where a role uses them (with a SelfSubjectAccessReview each, so
// nothing is created), then syncs the inline-rule Roles. Errors name what
// is missing and where the fix is.
func (p *Provider) Check(ctx context.Context) error {
	var missing []string
	check := func(ns string, needs []need) error {
		for _, n := range needs {
			ok, err := p.allowed(ctx, ns, n)
			if err != nil {
				return fmt.Errorf("kube: the API server at %s does not answer the broker: %w", p.cluster.Server, describe(err))
			}
			if !ok {
				missing = append(missing, fmt.Sprintf("%s %s in %s", n.verb, n.describe(), ns))
			}
		}
		return nil
	}
	for _, ns := range p.namespaces {
		if err := check(ns, namespaceNeeds); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(p.roles) {
		if r := p.roles[name]; len(r.Kube.Rules) > 0 {
			if err := check(r.Kube.Namespace, inlineNeeds(name)); err != nil {
				return err
			}
		}
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("kube: the broker's own identity lacks %s; apply the broker RBAC from docs/kubernetes.md",
			strings.Join(missing, ", ")))
	}
	if err := p.SyncRoles(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (n need) describe() string {
	r := n.resource
	if n.sub != "" {
		r += "/" + n.sub
	}
	if n.name != "" {
		r += " " + n.name
	}
	return r
}

func (p *Provider) allowed(ctx context.Context, ns string, n need) (bool, error) {
	r, err := p.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Namespace: ns, Verb: n.verb, Group: n.group, Resource: n.resource, Subresource: n.sub, Name: n.name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}
