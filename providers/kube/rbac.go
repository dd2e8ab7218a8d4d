package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/configs"
)

// roleRef checks that what the role binds exists (a RoleBinding to a
// missing Role would be accepted and grant nothing), or creates/updates
// the broker-owned Role for inline rules, before anything is created. A
// named Role found less than RoleCheckTTL ago is not asked for again (see
// rolecache.go); inline-rule Roles are synced on every mint.
func (p *Provider) roleRef(ctx context.Context, role configs.Role) (rbacv1.RoleRef, error) {
	kr := role.Kube
	switch {
	case kr.Role != "":
		if !p.checks.fresh(roleKey(kr), p.now(), RoleCheckTTL) {
			if err := p.checkNamed(ctx, role); err != nil {
				return rbacv1.RoleRef{}, missingRole(role, err, "role",
					fmt.Sprintf("kubectl -n %s create role %s --verb=... --resource=...", kr.Namespace, kr.Role))
			}
		}
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: kr.Role}, nil
	case kr.ClusterRole != "":
		if !p.checks.fresh(roleKey(kr), p.now(), RoleCheckTTL) {
			if err := p.checkNamed(ctx, role); err != nil {
				return rbacv1.RoleRef{}, missingRole(role, err, "cluster_role",
					fmt.Sprintf("kubectl create clusterrole %s --verb=... --resource=...", kr.ClusterRole))
			}
		}
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: kr.ClusterRole}, nil
	default:
		name, err := p.ensureInlineRole(ctx, role)
		if err != nil {
			return rbacv1.RoleRef{}, err
		}
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, nil
	}
}

func missingRole(role configs.Role, err error, field, create string) error {
	kr := role.Kube
	where := ""
	if field == "role" {
		where = " in namespace " + kr.Namespace
	}
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("kube: role %s: %s does not exist%s; create it (%s) or fix roles.%s.kube.%s",
			role.Name, kr.Source(), where, create, role.Name, field)
	}
	return fmt.Errorf("kube: role %s: read %s%s (the broker needs get on it, see docs/kubernetes.md): %w",
		role.Name, kr.Source(), where, describe(err))
}

// inlineBrokerRole is the optional Role of the shipped broker RBAC that
// lets the broker keep inline-rule Roles.
const inlineBrokerRole = "credbroker-broker-inline-rules"

// InlineRoleName is the Role the broker keeps for a credbroker role with
// inline rules.
func InlineRoleName(role string) string { return inlineRolePrefx + role }

// policyRules converts the config's rules.
func policyRules(rs []configs.KubeRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, len(rs))
	for i, r := range rs {
		out[i] = rbacv1.PolicyRule{
			APIGroups:     slices.Clone(r.APIGroups),
			Resources:     slices.Clone(r.Resources),
			Verbs:         slices.Clone(r.Verbs),
			ResourceNames: slices.Clone(r.ResourceNames),
		}
		if out[i].APIGroups == nil {
			out[i].APIGroups = []string{""}
		}
	}
	return out
}

// ensureInlineRole creates the role's Role, or updates its rules when they
// differ from the config (someone edited it, or the config changed).
func (p *Provider) ensureInlineRole(ctx context.Context, role configs.Role) (string, error) {
	kr := role.Kube
	name := InlineRoleName(role.Name)
	want := policyRules(kr.Rules)
	roles := p.client.RbacV1().Roles(kr.Namespace)
	// Two sessions of one role may start together: a conflict on create or
	// update means the other won; look again.
	for attempt := 0; ; attempt++ {
		cur, err := roles.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// Created empty, then filled by an update: RBAC checks the
			// escalate verb against the Role's name only on update (a
			// create request carries no name to check), so the broker's
			// escalate can be limited to the credbroker-role-<role> names.
			_, err = roles.Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kr.Namespace, Labels: map[string]string{
					LabelManagedBy: ManagedBy, LabelRole: role.Name, LabelInline: "true"}},
			}, metav1.CreateOptions{})
			if err == nil {
				p.log.Info("created the Role for inline rules", "role", role.Name, "namespace", kr.Namespace, "k8s_role", name)
				continue
			}
		case err != nil:
		case equality.Semantic.DeepEqual(normalize(cur.Rules), normalize(want)):
			return name, nil
		default:
			cur.Rules = want
			_, err = roles.Update(ctx, cur, metav1.UpdateOptions{})
			if err == nil {
				p.log.Info("updated the Role for inline rules to match the config", "role", role.Name, "namespace", kr.Namespace, "k8s_role", name)
			}
		}
		if err == nil {
			return name, nil
		}
		if attempt < 3 && (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) {
			continue
		}
		return "", fmt.Errorf("kube: role %s: keep Role %s/%s in sync with its rules (apply the optional Role %s of configs/examples/kube/broker-rbac.yaml in %s, with %s in its resourceNames; docs/kubernetes.md): %w",
			role.Name, kr.Namespace, name, inlineBrokerRole, kr.Namespace, name, describe(err))
	}
}

// normalize makes empty and nil lists compare equal.
func normalize(rs []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, len(rs))
	for i, r := range rs {
		out[i] = rbacv1.PolicyRule{
			APIGroups: nonNil(r.APIGroups), Resources: nonNil(r.Resources), Verbs: nonNil(r.Verbs),
			ResourceNames: nonNil(r.ResourceNames), NonResourceURLs: nonNil(r.NonResourceURLs),
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SyncRoles brings the broker-owned inline-rule Roles in line with the
// config: it creates or updates the Role of every role with rules, and
// deletes broker-owned Roles whose credbroker role is gone or no longer
// uses inline rules in that namespace.
func (p *Provider) SyncRoles(ctx context.Context) error {
	var errs []error
	keep := map[string]bool{}   // namespace/name
	inline := map[string]bool{} // namespaces with an inline-rules role
	for _, name := range sortedKeys(p.roles) {
		r := p.roles[name]
		if len(r.Kube.Rules) == 0 {
			continue
		}
		keep[r.Kube.Namespace+"/"+InlineRoleName(name)] = true
		inline[r.Kube.Namespace] = true
		if _, err := p.ensureInlineRole(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	sel := LabelManagedBy + "=" + ManagedBy + "," + LabelInline + "=true"
	for _, ns := range p.namespaces {
		list, err := p.client.RbacV1().Roles(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if apierrors.IsForbidden(err) && !inline[ns] {
			// No role uses inline rules here and the optional inline-rules
			// Role is not applied: the broker cannot have made any.
			p.log.Debug("not looking for stale inline-rule Roles: the broker may not list roles", "namespace", ns)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kube: list broker-owned roles in %s: %w", ns, describe(err)))
			continue
		}
		for _, r := range list.Items {
			if keep[ns+"/"+r.Name] {
				continue
			}
			err := p.client.RbacV1().Roles(ns).Delete(ctx, r.Name, metav1.DeleteOptions{})
			if ignoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("kube: delete stale Role %s/%s (or delete it yourself: kubectl -n %s delete role %s): %w",
					ns, r.Name, ns, r.Name, describe(err)))
				continue
			}
			p.log.Info("deleted a Role whose credbroker role no longer has inline rules", "namespace", ns, "k8s_role", r.Name)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
