package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/leases"
)

// Revoke deletes the session's ServiceAccount first (its tokens stop
// authenticating, after at most the API server's 10 s token cache), then
// its binding (from then on a token still in that cache is refused with
// 403). Objects already gone count as deleted, so Revoke is idempotent.
func (p *Provider) Revoke(ctx context.Context, l leases.Lease) error {
	if l.Kind != KindServiceAccount {
		return fmt.Errorf("kube: revoke %s: unknown lease kind %q", l.ID, l.Kind)
	}
	c, err := createdOf(l)
	if err != nil {
		return err
	}
	return p.deleteObjects(ctx, c)
}

// createdOf recovers the session's objects from a lease.
func createdOf(l leases.Lease) (*created, error) {
	ns, name := l.Data[dataNamespace], l.Data[dataName]
	if ns == "" || name == "" {
		var ok bool
		ns, name, ok = strings.Cut(l.ExternalID, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("kube: lease %s names no namespace/name (external id %q)", l.ID, l.ExternalID)
		}
	}
	kind := l.Data[dataBindingKind]
	if kind == "" {
		kind = kindRoleBinding
	}
	return &created{ns: ns, name: name, bindingKind: kind, sa: true, binding: true}, nil
}

// deleteObjects deletes what c says exists, service account first; it
// tries every object even when one fails.
func (p *Provider) deleteObjects(ctx context.Context, c *created) error {
	var errs []error
	del := func(what string, ok bool, f func() error) {
		if !ok {
			return
		}
		if err := ignoreNotFound(f()); err != nil {
			errs = append(errs, fmt.Errorf("kube: delete %s %s/%s: %w", what, c.ns, c.name, describe(err)))
		}
	}
	opts := metav1.DeleteOptions{}
	del("service account", c.sa, func() error {
		return p.client.CoreV1().ServiceAccounts(c.ns).Delete(ctx, c.name, opts)
	})
	del(strings.ToLower(c.bindingKind), c.binding, func() error {
		if c.bindingKind == kindClusterRoleBinding {
			return p.client.RbacV1().ClusterRoleBindings().Delete(ctx, c.name, opts)
		}
		return p.client.RbacV1().RoleBindings(c.ns).Delete(ctx, c.name, opts)
	})
	return errors.Join(errs...)
}

// RevokeAll deletes every broker-labelled ServiceAccount and RoleBinding
// with one DeleteCollection each per managed namespace (and the
// ClusterRoleBindings, when a role uses them). It goes on after a failure
// and reports all of them. It covers the leases in the namespaces this
// broker manages; a lease in another namespace (another broker's config)
// is left to per-lease revocation.
func (p *Provider) RevokeAll(ctx context.Context, ls []leases.Lease) ([]string, error) {
	opts := metav1.ListOptions{LabelSelector: sessionSelector}
	var errs []error
	fail := func(what, ns string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("kube: delete every broker %s in %s: %w", what, ns, describe(err)))
		}
	}
	del := metav1.DeleteOptions{}
	for _, ns := range p.namespaces {
		fail("service account", ns, p.client.CoreV1().ServiceAccounts(ns).DeleteCollection(ctx, del, opts))
		fail("rolebinding", ns, p.client.RbacV1().RoleBindings(ns).DeleteCollection(ctx, del, opts))
	}
	if p.clusterWide() {
		fail("clusterrolebinding", "the cluster", p.client.RbacV1().ClusterRoleBindings().DeleteCollection(ctx, del, opts))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("kube: revoke all: %w", errors.Join(errs...))
	}
	p.log.Warn("deleted every broker service account and binding", "namespaces", p.namespaces)
	var covered []string
	for _, l := range ls {
		if c, err := createdOf(l); err == nil && slices.Contains(p.namespaces, c.ns) {
			covered = append(covered, l.ID)
		}
	}
	return covered, nil
}

// FindOrphans lists the objects labelled with sessionID in every managed
// namespace and returns one lease per session object name that known does
// not hold; a binding left without its ServiceAccount counts too. It lists
// only ServiceAccounts and bindings, never Secrets.
func (p *Provider) FindOrphans(ctx context.Context, sessionID string, known []leases.Lease) ([]leases.Lease, error) {
	isKnown := map[string]bool{}
	for _, l := range known {
		isKnown[l.ID] = true
	}
	opts := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy + "," + LabelSession + "=" + sessionID}
	found := map[string]*created{} // by lease id
	add := func(ns, name, bindingKind string) {
		id := leaseID(ns, name)
		if isKnown[id] {
			return
		}
		c := found[id]
		if c == nil {
			c = &created{ns: ns, name: name, bindingKind: kindRoleBinding, sa: true, binding: true}
			found[id] = c
		}
		if bindingKind != "" {
			c.bindingKind = bindingKind
		}
	}
	for _, ns := range p.namespaces {
		sas, err := p.client.CoreV1().ServiceAccounts(ns).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("kube: list service accounts of session %s in %s: %w", sessionID, ns, describe(err))
		}
		for _, o := range sas.Items {
			add(ns, o.Name, "")
		}
		rbs, err := p.client.RbacV1().RoleBindings(ns).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("kube: list rolebindings of session %s in %s: %w", sessionID, ns, describe(err))
		}
		for _, o := range rbs.Items {
			add(ns, o.Name, "")
		}
	}
	if p.clusterWide() {
		crbs, err := p.client.RbacV1().ClusterRoleBindings().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("kube: list clusterrolebindings of session %s: %w", sessionID, describe(err))
		}
		for _, o := range crbs.Items {
			for _, sub := range o.Subjects {
				if sub.Kind == "ServiceAccount" && sub.Name == o.Name {
					add(sub.Namespace, o.Name, kindClusterRoleBinding)
				}
			}
		}
	}
	var out []leases.Lease
	for _, id := range sortedKeys(found) {
		c := found[id]
		out = append(out, leases.Lease{
			ID: id, SessionID: sessionID, Provider: Name, Kind: KindServiceAccount,
			ExternalID: c.ns + "/" + c.name, IssuedAt: p.now(), State: leases.LeaseRevokePending,
			Data: map[string]string{dataNamespace: c.ns, dataName: c.name, dataBindingKind: c.bindingKind},
		})
	}
	return out, nil
}
