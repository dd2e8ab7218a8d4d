package broker_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
)

// TestReloadLiveSessionKeepsItsGrant runs against a real Vault: after a
// reload changes a role and adds one, a new session of the changed role
// gets the new grant, the new role starts, and a session that was live
// before keeps what it was issued, then ends and is revoked as usual.
func TestReloadLiveSessionKeepsItsGrant(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	live := h.start("agent-readonly")
	liveTok := h.token(live)
	if canRead(t, h, liveTok, "secret/data/agent/dev/config") {
		t.Fatal("an agent-readonly token reads the dev secret before any reload")
	}

	cur := h.b.Config()
	next := *cur
	next.Roles = maps.Clone(cur.Roles)
	changed := next.Roles["agent-readonly"]
	changed.Vault = &configs.VaultRole{Policies: []string{"agent-dev"},
		Secrets: []configs.VaultSecret{{Name: "config", Path: "secret/data/agent/dev/config", Method: "read"}}}
	next.Roles["agent-readonly"] = changed
	added := cur.Roles["agent-readonly"]
	added.Name = "agent-new"
	next.Roles["agent-new"] = added
	res, err := h.b.Reload(func() (*configs.Config, error) { return &next, nil })
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !equalResult(res, broker.ReloadResult{Added: []string{"agent-new"}, Changed: []string{"agent-readonly"}}) {
		t.Errorf("reload result %+v", res)
	}

	fresh := h.start("agent-readonly")
	freshTok := h.token(fresh)
	if !canRead(t, h, freshTok, "secret/data/agent/dev/config") {
		t.Error("a session started after the reload lacks the changed role's new policy")
	}
	if got := readText(t, filepath.Join(fresh.Dir, "vault/secrets/config.json")); !strings.Contains(got, "db_host") {
		t.Errorf("the new session's secret is not the changed role's: %s", got)
	}
	if canRead(t, h, liveTok, "secret/data/agent/dev/config") || !h.tokenValid(liveTok) {
		t.Error("the live session's token changed with the reload: want it valid and still agent-readonly only")
	}
	if got := readText(t, filepath.Join(live.Dir, "vault/secrets/config.json")); !strings.Contains(got, "region") {
		t.Errorf("the live session's secret changed with the reload: %s", got)
	}
	newer := h.start("agent-new")
	if !canRead(t, h, h.token(newer), "secret/data/agent/readonly/config") {
		t.Error("the added role's session cannot read its secret")
	}

	for _, si := range []broker.SessionInfo{live, fresh, newer} {
		if _, err := h.b.EndSession(ctx, h.caller, si.ID, "test"); err != nil {
			t.Fatalf("end %s: %v", si.ID, err)
		}
	}
	if h.tokenValid(liveTok) || h.tokenValid(freshTok) {
		t.Error("a session token is still valid after its session ended")
	}
	if n := h.sessionTokens(); n != 0 {
		t.Errorf("%d session tokens left in Vault after every session ended", n)
	}
	h.assertNoLeaks()
}

// canRead reports whether tok may read path in Vault.
func canRead(t *testing.T, h *harness, tok, path string) bool {
	t.Helper()
	_, err := h.client(tok).Logical().Read(path)
	var re *api.ResponseError
	if err != nil && (!errors.As(err, &re) || re.StatusCode != 403) {
		t.Fatalf("read %s: unexpected error %v", path, err)
	}
	return err == nil
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadEgressNewSessionsOnly: a reload that narrows a role's egress
// block applies to the gateways of sessions started after it; the gateway
// of a session already live keeps the policy it was opened with.
func TestReloadEgressNewSessionsOnly(t *testing.T) {
	e := newEgressEnv(t)
	ctx := t.Context()
	web := fmt.Sprintf("http://web.test:%d/", e.web.Port())
	live, err := e.b.StartSession(ctx, e.h.caller, broker.StartRequest{Role: "agent-net"})
	if err != nil {
		t.Fatal(err)
	}
	if code := getVia(t, live.EgressSocket, web); code != 200 {
		t.Fatalf("web.test through the live gateway before the reload: %d, want 200", code)
	}

	cur := e.b.Config()
	next := *cur
	next.Roles = maps.Clone(cur.Roles)
	narrowed := next.Roles["agent-net"]
	narrowed.Egress = &configs.Egress{Allow: []string{fmt.Sprintf("stream.test:%d", e.stream.Port())}}
	next.Roles["agent-net"] = narrowed
	if _, err := e.b.Reload(func() (*configs.Config, error) { return &next, nil }); err != nil {
		t.Fatalf("reload: %v", err)
	}

	fresh, err := e.b.StartSession(ctx, e.h.caller, broker.StartRequest{Role: "agent-net"})
	if err != nil {
		t.Fatal(err)
	}
	if code := getVia(t, fresh.EgressSocket, web); code != 403 {
		t.Errorf("web.test through a gateway opened after the reload: %d, want 403 (no longer allowed)", code)
	}
	if code := getVia(t, live.EgressSocket, web); code != 200 {
		t.Errorf("web.test through the live session's gateway after the reload: %d, want 200 (its policy stays)", code)
	}
	for _, si := range []broker.SessionInfo{live, fresh} {
		if _, err := e.b.EndSession(ctx, e.h.caller, si.ID, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(si.EgressSocket); !os.IsNotExist(err) {
			t.Errorf("gateway socket of %s left after its end: %v", si.ID, err)
		}
	}
}

// getVia GETs url through the egress gateway at sock and returns the
// status.
func getVia(t *testing.T, sock, url string) int {
	t.Helper()
	resp, err := httpVia(sock).Get(url)
	if err != nil {
		t.Fatalf("GET %s through %s: %v", url, sock, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
