package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Lease data keys (non-secret; returned to Renew and Revoke).
const (
	dataNamespace   = "namespace"
	dataName        = "name" // ServiceAccount and binding share it
	dataBindingKind = "binding_kind"
	dataAudiences   = "audiences" // comma-separated
	dataTokenTTL    = "token_ttl" // seconds, the role's cap
)

const (
	kindRoleBinding        = "RoleBinding"
	kindClusterRoleBinding = "ClusterRoleBinding"
)

// cleanupTimeout bounds the deletion of a failed mint's objects, which
// runs even when the caller's context is done.
const cleanupTimeout = 30 * time.Second

// created records what a mint made so far, so a failure deletes exactly it.
type created struct {
	ns, name    string
	bindingKind string
	sa, binding bool
}

// Mint checks the role's Role/ClusterRole (or syncs its inline Role), then
// creates the session's ServiceAccount and binding and requests a token
// for the ServiceAccount. On any failure it deletes what it created.
func (p *Provider) Mint(ctx context.Context, s providers.Session, role configs.Role) (providers.Grant, error) {
	kr := role.Kube
	if kr == nil {
		return providers.Grant{}, fmt.Errorf("kube: role %s has no kube block", role.Name)
	}
	name, err := objectName(s.ID)
	if err != nil {
		return providers.Grant{}, fmt.Errorf("kube: %w", err)
	}
	ref, err := p.roleRef(ctx, role)
	if err != nil {
		return providers.Grant{}, err
	}
	c := &created{ns: kr.Namespace, name: name, bindingKind: kindRoleBinding}
	if kr.ClusterWide {
		c.bindingKind = kindClusterRoleBinding
	}
	g, err := p.mint(ctx, s, role, ref, c)
	if err == nil {
		return g, nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if cerr := p.deleteObjects(cctx, c); cerr != nil {
		// The caller keeps the lease pending and retries its revocation.
		l := p.lease(s, role, c, time.Time{})
		l.State = leases.LeaseRevokePending
		return providers.Grant{Leases: []leases.Lease{l}},
			errors.Join(err, fmt.Errorf("kube: delete the objects of the failed mint: %w", cerr))
	}
	return providers.Grant{}, err
}

func (p *Provider) mint(ctx context.Context, s providers.Session, role configs.Role, ref rbacv1.RoleRef, c *created) (providers.Grant, error) {
	kr := role.Kube
	meta := metav1.ObjectMeta{
		Name:        c.name,
		Namespace:   c.ns,
		Labels:      map[string]string{LabelManagedBy: ManagedBy, LabelSession: s.ID, LabelRole: role.Name},
		Annotations: map[string]string{annotExpires: s.ExpiresAt.UTC().Format(time.RFC3339)},
	}
	if _, err := p.client.CoreV1().ServiceAccounts(c.ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: new(false)}, metav1.CreateOptions{}); err != nil {
		return providers.Grant{}, fmt.Errorf("kube: create service account %s/%s: %w", c.ns, c.name, describe(err))
	}
	c.sa = true
	// No Secret: the tokens carry the ServiceAccount's UID, and the API
	// server refuses them once that ServiceAccount is gone, so the broker
	// needs no permission on Secrets at all (docs/kubernetes.md).
	if err := p.createBinding(ctx, meta, ref, c); err != nil {
		return providers.Grant{}, err
	}
	tok, exp, err := p.requestToken(ctx, s, c.ns, c.name, kr.Audiences, kr.TokenTTL.D())
	if err != nil {
		return providers.Grant{}, err
	}
	kubeconfig, err := renderKubeconfig(p.cluster, c.ns, c.name, role.DeliveryFor(Name) == configs.DeliveryProxy)
	if err != nil {
		return providers.Grant{}, err
	}
	l := p.lease(s, role, c, exp)
	p.log.Info("minted service account token", "session", s.ID, "role", role.Name, "lease", l.ID, "expires", exp)
	return providers.Grant{
		Leases:     []leases.Lease{l},
		Files:      map[string]secret.Value{ConfigFile: kubeconfig, TokenFile: tok},
		Env:        map[string]secret.Value{envKubeconfig: secret.New(sessionDirRef + "/" + ConfigFile)},
		Secrets:    []providers.IssuedSecret{{Value: tok, What: "kube service account token", Expires: exp, Name: providers.SecretKubeToken}},
		UpstreamCA: p.cluster.CAData,
	}, nil
}

// sessionDirRef is agentenv.SessionDirRef (providers must not import
// agentenv): the exec wrapper replaces it with the mounted session dir.
const sessionDirRef = "${CREDBROKER_SESSION_DIR}"

func (p *Provider) createBinding(ctx context.Context, meta metav1.ObjectMeta, ref rbacv1.RoleRef, c *created) error {
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: c.name, Namespace: c.ns}}
	var err error
	if c.bindingKind == kindClusterRoleBinding {
		meta.Namespace = ""
		_, err = p.client.RbacV1().ClusterRoleBindings().Create(ctx,
			&rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}, metav1.CreateOptions{})
	} else {
		_, err = p.client.RbacV1().RoleBindings(c.ns).Create(ctx,
			&rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("kube: bind %s %q to %s/%s with a %s: %w", ref.Kind, ref.Name, c.ns, c.name, c.bindingKind, describe(err))
	}
	c.binding = true
	return nil
}

// tokenSeconds is how long the next token should live: until the session
// ends, capped by the role's token_ttl, and at least the API's 10 minutes.
func tokenSeconds(s providers.Session, now time.Time, roleCap time.Duration) int64 {
	want := s.ExpiresAt.Sub(now)
	want = min(want, roleCap)
	want = max(want, configs.MinKubeTokenTTL)
	return int64((want + time.Second - 1) / time.Second)
}

// requestToken asks for a token of the ServiceAccount and returns it with
// its expiry by the broker's clock (providers.ExpiresBy: the server may
// shorten the life asked for, and its clock may differ from the broker's).
func (p *Provider) requestToken(ctx context.Context, s providers.Session, ns, name string, audiences []string, roleCap time.Duration) (secret.Value, time.Time, error) {
	start := p.now()
	secs := tokenSeconds(s, start, roleCap)
	tr, err := p.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: &secs,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return secret.Value{}, time.Time{}, fmt.Errorf("kube: request a token for %s/%s: %w", ns, name, describe(err))
	}
	if tr.Status.Token == "" || tr.Status.ExpirationTimestamp.IsZero() {
		return secret.Value{}, time.Time{}, fmt.Errorf("kube: request a token for %s/%s: empty answer", ns, name)
	}
	return secret.New(tr.Status.Token), providers.ExpiresBy(start, time.Duration(secs)*time.Second, tr.Status.ExpirationTimestamp.Time), nil
}

// lease is the one lease of a session: its ServiceAccount, with what Renew
// and Revoke need to find its binding and request new tokens.
func (p *Provider) lease(s providers.Session, role configs.Role, c *created, exp time.Time) leases.Lease {
	return leases.Lease{
		ID:         leaseID(c.ns, c.name),
		SessionID:  s.ID,
		Provider:   Name,
		Kind:       KindServiceAccount,
		ExternalID: c.ns + "/" + c.name,
		IssuedAt:   p.now(),
		ExpiresAt:  exp,
		Renewable:  true,
		State:      leases.LeaseActive,
		Data: map[string]string{
			dataNamespace:   c.ns,
			dataName:        c.name,
			dataBindingKind: c.bindingKind,
			dataAudiences:   strings.Join(role.Kube.Audiences, ","),
			dataTokenTTL:    fmt.Sprint(int64(role.Kube.TokenTTL.D() / time.Second)),
		},
	}
}

// leaseID is the path-shaped store id of a session's ServiceAccount.
func leaseID(ns, name string) string {
	return Name + "/" + KindServiceAccount + "/" + ns + "/" + name
}
