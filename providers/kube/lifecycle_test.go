package kube_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/providertest"
)

// claims decodes a JWT's payload (no verification: the API server did that).
func claims(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func jwtExpiry(t testing.TB, tok string) time.Time {
	exp, _ := claims(t, tok)["exp"].(float64)
	return time.Unix(int64(exp), 0)
}

// TestRenew: the refresher's Renew returns a new, working token of the
// same ServiceAccount (no Secret), with a fresh expiry, and only the token file; after
// revocation it fails (without the token in the error).
func TestRenew(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	role := podReaderRole(e.ns)
	role.Kube.TokenTTL = configs.Duration(10 * time.Minute)
	s := providertest.NewSession(role.Name, time.Hour)
	g, err := e.prov.Mint(ctx, s, role)
	if err != nil {
		t.Fatal(err)
	}
	l := g.Leases[0]
	if !l.Renewable || !l.ExpiresAt.Before(s.ExpiresAt) {
		t.Fatalf("lease %+v: want renewable and expiring before the session (token_ttl 10m, session 1h)", l)
	}
	ng, err := e.prov.Renew(ctx, s, l, providertest.Files(g.Files))
	if err != nil {
		t.Fatal(err)
	}
	nl := ng.Leases[0]
	if nl.ID != l.ID || nl.ExpiresAt.Before(l.ExpiresAt) || !nl.IssuedAt.After(l.IssuedAt) {
		t.Errorf("renewed lease %+v, was %+v", nl, l)
	}
	tok := ng.Files[kube.TokenFile].Reveal()
	c := claims(t, tok)
	bound, _ := c["kubernetes.io"].(map[string]any)
	sa, _ := bound["serviceaccount"].(map[string]any)
	if sa["name"] != "credbroker-"+s.ID || sa["uid"] == "" || bound["secret"] != nil {
		t.Errorf("renewed token is bound to %v, want the session's service account only", bound)
	}
	if err := e.listPods(ctx, t, ng, e.ns); err != nil {
		t.Fatalf("renewed token: %v", err)
	}
	if err := e.prov.Revoke(ctx, l); err != nil {
		t.Fatal(err)
	}
	_, err = e.prov.Renew(ctx, s, l, providertest.Files(g.Files))
	if err == nil {
		t.Fatal("renewing a revoked session succeeded")
	}
	for _, secretTok := range []string{tok, g.Files[kube.TokenFile].Reveal()} {
		if strings.Contains(err.Error(), secretTok) {
			t.Fatal("the renew error contains a token")
		}
	}
	// A session past its end is not renewed.
	done := s
	done.ExpiresAt = time.Now().Add(-time.Second)
	if _, err := e.prov.Renew(ctx, done, l, nil); !errors.Is(err, providers.ErrNotRenewable) {
		t.Errorf("renew after the session's end: %v, want ErrNotRenewable", err)
	}
}

// TestMissingRoleFailsCleanly: a Role (or ClusterRole) that does not exist
// fails the mint with an error that names it and the fix, and leaves no
// object behind.
func TestMissingRoleFailsCleanly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, kr := range []configs.KubeRole{
		{Namespace: e.ns, Role: "does-not-exist"},
		{Namespace: e.ns, ClusterRole: "no-such-clusterrole"},
	} {
		role := configs.Role{Name: "broken", Kube: &kr}
		role.Kube.TokenTTL = configs.Duration(time.Hour)
		s := providertest.NewSession(role.Name, 10*time.Minute)
		g, err := e.prov.Mint(ctx, s, role)
		if err == nil {
			t.Fatalf("mint with a missing %s succeeded", kr.Source())
		}
		want := kr.Source() + " does not exist"
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "roles.broken.kube.") {
			t.Errorf("error %q; want it to say %q and name the config field", err, want)
		}
		if len(g.Leases) != 0 {
			t.Errorf("failed mint returned leases %v", providertest.LeasesOf(g.Leases))
		}
		if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
			t.Errorf("failed mint left %v", left)
		}
		t.Logf("error: %v", err)
	}
}

// TestFailureAfterCreateCleansUp: the broker identity here may create the
// service account and binding but not request tokens, so the mint
// fails at its last step; everything it created is deleted.
func TestFailureAfterCreateCleansUp(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A broker identity without serviceaccounts/token: a ServiceAccount
	// with the docs' broker Role minus that rule.
	e.srv.Apply(t, `
apiVersion: v1
kind: ServiceAccount
metadata: {name: notoken-broker, namespace: NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: notoken-broker, namespace: NS}
rules:
- {apiGroups: [""], resources: [serviceaccounts], verbs: [create, delete, list]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings], verbs: [create, delete, list]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [get, bind]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: notoken-broker, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: notoken-broker}
subjects:
- {kind: ServiceAccount, name: notoken-broker, namespace: NS}
`, "NS", e.ns)
	p := e.providerAsServiceAccount(t, "notoken-broker", podReaderRole(e.ns))
	s := providertest.NewSession("agent-k8s", 10*time.Minute)
	g, err := p.Mint(ctx, s, podReaderRole(e.ns))
	if err == nil {
		t.Fatal("mint without serviceaccounts/token permission succeeded")
	}
	if !strings.Contains(err.Error(), "request a token") || len(g.Leases) != 0 {
		t.Errorf("error %q, leases %v; want a token-request failure and no lease", err, g.Leases)
	}
	if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
		t.Errorf("failed mint left %v", left)
	}
	t.Logf("error: %v", err)
}

// TestInlineRulesRoleInSync: a role with inline rules gets one broker-owned
// Role (not one per session) that follows the config, is repaired when
// edited in the cluster, and is deleted when the role goes.
func TestInlineRulesRoleInSync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	role := configs.Role{Name: "agent-inline", Kube: &configs.KubeRole{
		Namespace: e.ns, TokenTTL: configs.Duration(time.Hour),
		Rules: []configs.KubeRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}}
	p := e.provider(t, "admin", role)
	g1, err := p.Mint(ctx, providertest.NewSession(role.Name, 10*time.Minute), role)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Mint(ctx, providertest.NewSession(role.Name, 10*time.Minute), role); err != nil {
		t.Fatal(err)
	}
	owned := func() []string {
		rs, err := e.srv.Admin.RbacV1().Roles(e.ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelInline + "=true"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rs.Items {
			names = append(names, r.Name)
		}
		return names
	}
	if got := owned(); len(got) != 1 || got[0] != kube.InlineRoleName(role.Name) {
		t.Fatalf("broker-owned roles after two sessions = %v, want one %s", got, kube.InlineRoleName(role.Name))
	}
	checkAccess(t, e.client(t, g1), []access{
		{"list", "pods", "", e.ns, true}, {"list", "configmaps", "", e.ns, false}, {"delete", "pods", "", e.ns, false},
	})

	// Someone widens the Role in the cluster: the next mint puts it back.
	r, err := e.srv.Admin.RbacV1().Roles(e.ns).Get(ctx, kube.InlineRoleName(role.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Rules[0].Resources = append(r.Rules[0].Resources, "secrets")
	if _, err := e.srv.Admin.RbacV1().Roles(e.ns).Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Mint(ctx, providertest.NewSession(role.Name, 10*time.Minute), role); err != nil {
		t.Fatal(err)
	}
	checkAccess(t, e.client(t, g1), []access{{"list", "secrets", "", e.ns, false}})

	// The config changes: a broker started with it (Check) updates the Role.
	role.Kube.Rules = []configs.KubeRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list"}}}
	p2 := e.provider(t, "admin", role)
	if err := p2.Check(ctx); err != nil {
		t.Fatal(err)
	}
	checkAccess(t, e.client(t, g1), []access{{"list", "pods", "", e.ns, false}, {"list", "configmaps", "", e.ns, true}})

	// The role is removed from the config: its Role goes too.
	p3 := e.provider(t, "admin", podReaderRole(e.ns))
	if err := p3.SyncRoles(ctx); err != nil {
		t.Fatal(err)
	}
	if got := owned(); len(got) != 0 {
		t.Errorf("broker-owned roles after the role was removed = %v", got)
	}
	if _, err := p.RevokeAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCheckReportsMissingPermissions: a broker identity without RBAC gets
// an error from Check naming what it lacks and where the fix is.
func TestCheckReportsMissingPermissions(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, "broker", podReaderRole(e.ns))
	err := p.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "create serviceaccounts/token in "+e.ns) || !strings.Contains(err.Error(), "docs/kubernetes.md") {
		t.Fatalf("Check = %v; want the missing permissions listed with a pointer to the docs", err)
	}
}

// TestNoTokenInLogsLeasesErrorsOrAuditLog: tokens never reach the
// provider's log, the lease records, its errors, or the API server's audit
// log (which names the session's service account for every request).
func TestNoTokenInLogsLeasesErrorsOrAuditLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := providertest.NewSession("agent-k8s", 30*time.Minute)
	g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
	if err != nil {
		t.Fatal(err)
	}
	_ = e.listPods(ctx, t, g, e.ns)
	_ = e.listPods(ctx, t, g, "default") // a denied request is audited too
	ng, err := e.prov.Renew(ctx, s, g.Leases[0], providertest.Files(g.Files))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	_, renewErr := e.prov.Renew(ctx, s, g.Leases[0], nil)
	stored, _ := json.Marshal(append(g.Leases, ng.Leases...))
	audit, err := os.ReadFile(e.srv.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	places := map[string]string{
		"provider log":    e.logs.String(),
		"lease records":   string(stored),
		"renew error":     renewErr.Error(),
		"apiserver audit": string(audit),
	}
	for _, tok := range []string{g.Files[kube.TokenFile].Reveal(), ng.Files[kube.TokenFile].Reveal()} {
		sig := tok[strings.LastIndex(tok, ".")+1:]
		for where, text := range places {
			if strings.Contains(text, tok) || strings.Contains(text, sig) {
				t.Errorf("the %s contains a session token", where)
			}
		}
	}
	if user := `"username":"system:serviceaccount:` + e.ns + `:credbroker-` + s.ID + `"`; !strings.Contains(string(audit), user) {
		t.Errorf("the audit log does not name the session's service account (%s)", user)
	}
	if !strings.Contains(e.logs.String(), s.ID) {
		t.Error("the provider log does not name the session")
	}
}

// TestFindOrphansAfterPartialMint: a crash after the ServiceAccount and
// the binding were created but before the token (and before the lease was
// recorded) leaves objects that FindOrphans finds by the session label and
// Revoke deletes.
func TestFindOrphansAfterPartialMint(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := providertest.NewSession("agent-k8s", 10*time.Minute)
	labels := "{" + kube.LabelManagedBy + ": " + kube.ManagedBy + ", " + kube.LabelSession + ": " + s.ID + "}"
	e.srv.Apply(t, `
apiVersion: v1
kind: ServiceAccount
metadata: {name: credbroker-SID, namespace: NS, labels: LABELS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: credbroker-SID, namespace: NS, labels: LABELS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: credbroker-SID, namespace: NS}
`, "NS", e.ns, "SID", s.ID, "LABELS", labels)
	found, err := e.prov.FindOrphans(ctx, s.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].ExternalID != e.ns+"/credbroker-"+s.ID {
		t.Fatalf("orphans = %v", providertest.LeasesOf(found))
	}
	if err := e.prov.Revoke(ctx, found[0]); err != nil {
		t.Fatal(err)
	}
	if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
		t.Errorf("revoking the orphan left %v", left)
	}
}

// TestAudiences: tokens carry the role's audiences; a token for another
// audience is not accepted by the API server itself.
func TestAudiences(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	role := podReaderRole(e.ns)
	role.Kube.Audiences = []string{"https://vault.example.test"}
	g, err := e.prov.Mint(ctx, providertest.NewSession(role.Name, 10*time.Minute), role)
	if err != nil {
		t.Fatal(err)
	}
	defer e.prov.Revoke(ctx, g.Leases[0])
	aud, _ := claims(t, g.Files[kube.TokenFile].Reveal())["aud"].([]any)
	if len(aud) != 1 || aud[0] != "https://vault.example.test" {
		t.Errorf("aud = %v", aud)
	}
	if err := e.listPods(ctx, t, g, e.ns); !apierrors.IsUnauthorized(err) {
		t.Errorf("the API server accepted a token for another audience: %v", err)
	}
}
