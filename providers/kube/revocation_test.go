package kube_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/providertest"
)

// TestRevocationWindow measures how long the API server keeps accepting a
// token after its service account is deleted, at session end (Revoke) and
// at revoke --all (RevokeAll). A token checked successfully in the last 10 s
// is served from kube-apiserver's token cache until that entry expires; a
// token never used is refused at once. docs/kubernetes.md quotes these.
func TestRevocationWindow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mint := func() (providers.Session, providers.Grant) {
		s := providertest.NewSession("agent-k8s", 10*time.Minute)
		g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
		if err != nil {
			t.Fatal(err)
		}
		return s, g
	}
	use := func(g providers.Grant) time.Time {
		at := time.Now()
		if err := e.listPods(ctx, t, g, e.ns); err != nil {
			t.Fatal(err)
		}
		return at
	}

	_, g := mint()
	firstUse := use(g)
	deleted := time.Now()
	if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	d, err := e.waitRejected(ctx, t, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session end, token used just before: rejected %s after deletion, %s after its first successful check",
		d.Round(100*time.Millisecond), time.Since(firstUse).Round(100*time.Millisecond))
	if since := deleted.Add(d).Sub(firstUse); since > 12*time.Second {
		t.Errorf("accepted %s after its first check; the API server's cache keeps successes for 10 s", since)
	}

	_, g = mint()
	if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	if d, err := e.waitRejected(ctx, t, g); err != nil || d > time.Second {
		t.Errorf("session end, token never used: rejected after %s (%v); want at once", d, err)
	} else {
		t.Logf("session end, token never used: rejected %s after deletion", d.Round(100*time.Millisecond))
	}

	_, g1 := mint()
	_, g2 := mint()
	firstUse = use(g1)
	if _, err := e.prov.RevokeAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
	d1, err := e.waitRejected(ctx, t, g1)
	if err != nil {
		t.Fatal(err)
	}
	sinceUse := time.Since(firstUse)
	d2, err := e.waitRejected(ctx, t, g2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("revoke --all: used token rejected %s after deletion (%s after its first check); unused token rejected at its first try (%s)",
		d1.Round(100*time.Millisecond), sinceUse.Round(100*time.Millisecond), d2.Round(100*time.Millisecond))
}

// TestDeletingTheSecretInvalidatesTokens: the tokens are bound to the
// session's Secret, so deleting it (even with the service account still
// there) makes them fail.
func TestDeletingTheSecretInvalidatesTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := providertest.NewSession("agent-k8s", 10*time.Minute)
	g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer e.prov.Revoke(ctx, g.Leases[0])
	if err := e.srv.Admin.CoreV1().Secrets(e.ns).Delete(ctx, "credbroker-"+s.ID, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.waitRejected(ctx, t, g); err != nil {
		t.Fatal(err)
	}
}
