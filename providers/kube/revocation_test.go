package kube_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/providertest"
)

// Bounds the revocation tests assert; docs/kubernetes.md quotes what they
// log. Authorization: the API server's RBAC authorizer sees a deleted
// binding within milliseconds. Authentication: its token cache keeps a
// successful check for 10 s.
const (
	forbiddenLimit     = time.Second
	cachedTokenLimit   = 12 * time.Second
	uncachedTokenLimit = time.Second
)

// TestRevocationWindow measures, at session end (Revoke) and at revoke
// --all (RevokeAll), when a session's token is first refused (403: the API
// server still authenticates a token it checked successfully in the last
// 10 s from its cache, but the binding is gone) and when it is refused as
// unknown (401). A token never used is refused with 401 at once.
func TestRevocationWindow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mint := func() providers.Grant {
		s := providertest.NewSession("agent-k8s", 10*time.Minute)
		g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	use := func(g providers.Grant) time.Time {
		at := time.Now()
		if err := e.listPods(ctx, t, g, e.ns); err != nil {
			t.Fatal(err)
		}
		return at
	}
	check := func(what string, r refusal, firstUse, ended time.Time) {
		t.Helper()
		t.Logf("%s: 403 %s after the revocation returned, 401 %s after (%s after the token's first successful check)",
			what, r.refused.Round(time.Millisecond), r.unauthorized.Round(10*time.Millisecond),
			ended.Add(r.unauthorized).Sub(firstUse).Round(10*time.Millisecond))
		if r.refused > forbiddenLimit {
			t.Errorf("%s: first refused %s after the revocation; want within %s (authorization)", what, r.refused, forbiddenLimit)
		}
		if since := ended.Add(r.unauthorized).Sub(firstUse); since > cachedTokenLimit {
			t.Errorf("%s: authenticated %s after its first check; the API server caches successes for 10 s", what, since)
		}
	}

	g := mint()
	firstUse := use(g)
	start := time.Now()
	if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	t.Logf("Revoke took %s", ended.Sub(start).Round(time.Millisecond))
	r, err := e.waitRefusals(ctx, t, g, ended)
	if err != nil {
		t.Fatal(err)
	}
	check("session end, token used just before", r, firstUse, ended)

	g = mint()
	if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	if r, err := e.waitRefusals(ctx, t, g, time.Now()); err != nil || r.unauthorized > uncachedTokenLimit {
		t.Errorf("session end, token never used: 401 after %s (%v); want at once", r.unauthorized, err)
	} else {
		t.Logf("session end, token never used: 401 %s after the revocation returned", r.unauthorized.Round(time.Millisecond))
	}

	g1, g2 := mint(), mint()
	firstUse = use(g1)
	if _, err := e.prov.RevokeAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ended = time.Now()
	r1, err := e.waitRefusals(ctx, t, g1, ended)
	if err != nil {
		t.Fatal(err)
	}
	check("revoke --all, token used just before", r1, firstUse, ended)
	r2, err := e.waitRefusals(ctx, t, g2, time.Now())
	if err != nil || r2.unauthorized > uncachedTokenLimit {
		t.Errorf("revoke --all, token never used: 401 after %s (%v); want at once", r2.unauthorized, err)
	}
}

// TestDeletingTheServiceAccountIsEnough: the tokens carry the
// ServiceAccount's UID, so deleting the ServiceAccount alone (no Secret,
// binding left in place) makes the API server refuse them with 401, and a
// ServiceAccount created again under the same name does not revive them.
// While its binding exists, a token the API server checked in the last
// 10 s keeps its permissions until that cache entry expires: that is why
// Revoke deletes the binding too.
func TestDeletingTheServiceAccountIsEnough(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, used := range []bool{false, true} {
		s := providertest.NewSession("agent-k8s", 10*time.Minute)
		g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
		if err != nil {
			t.Fatal(err)
		}
		if used {
			if err := e.listPods(ctx, t, g, e.ns); err != nil {
				t.Fatal(err)
			}
		}
		name := "credbroker-" + s.ID
		if err := e.srv.Admin.CoreV1().ServiceAccounts(e.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		if !used {
			// A check that reaches the API server before its own cache of
			// ServiceAccounts has seen the deletion succeeds, and a success
			// is cached for 10 s: the first check waits until the server's
			// watch cache (a GET at resourceVersion 0) no longer has it,
			// and a moment more for the authenticator's informer, which
			// is fed from that watch cache. The time still counts from
			// the deletion.
			e.waitGone(ctx, t, name)
		}
		r, err := e.waitRefusals(ctx, t, g, deleted)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("token used before=%v: 401 %s after only the ServiceAccount was deleted (first refusal %s)",
			used, r.unauthorized.Round(time.Millisecond), r.refused.Round(time.Millisecond))
		if r.refused != r.unauthorized {
			t.Errorf("token used before=%v: refused with 403 before 401 although the binding is still there", used)
		}
		if !used && r.unauthorized > uncachedTokenLimit {
			t.Errorf("token never used: 401 only %s after the ServiceAccount was deleted; want at once", r.unauthorized)
		}
		if _, err := e.srv.Admin.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := e.listPods(ctx, t, g, e.ns); !apierrors.IsUnauthorized(err) {
			t.Errorf("token used before=%v: a new ServiceAccount of the same name revived it: %v", used, err)
		}
		if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
			t.Fatal(err)
		}
	}
}

// waitGone waits (at most 5 s) until the API server's watch cache no
// longer holds ServiceAccount name, then 100 ms more (see
// TestDeletingTheServiceAccountIsEnough).
func (e *env) waitGone(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.srv.Admin.CoreV1().ServiceAccounts(e.ns).Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ServiceAccount %s still in the API server's watch cache 5 s after its deletion (last: %v)", name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
}
