// Package providertest is the conformance suite every provider runs against
// its real server: mint → use → scope denied → revoke → rejected, idempotent
// revoke, expiry within the session, revoke-all, crash orphans found.
package providertest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Harness connects the suite to one provider and its server.
type Harness struct {
	Provider providers.Provider
	// Role is a role the provider can mint for.
	Role configs.Role
	// Use returns nil when the grant's credentials do what the role allows.
	Use func(ctx context.Context, g providers.Grant) error
	// Denied returns nil when the server refuses an action outside the role.
	Denied func(ctx context.Context, g providers.Grant) error
	// Rejected returns nil when the server refuses the grant's credentials
	// altogether (after revocation). It may poll for a backend's documented
	// propagation delay.
	Rejected func(ctx context.Context, g providers.Grant) error
	// MinLife is the backend's shortest credential life (STS: 15m). A
	// credential may outlive a shorter session by that much; the broker
	// revokes it when the session ends.
	MinLife time.Duration
	// RevokesBySession is set for backends whose revocation keys on the
	// session id and that cannot list what they issued (STS): FindOrphans
	// then always offers a lease for a session the store knows nothing of.
	RevokesBySession bool
}

// Files adapts a Grant's files to providers.FileReader.
type Files map[string]secret.Value

// ReadFile implements providers.FileReader.
func (f Files) ReadFile(rel string) (secret.Value, error) {
	v, ok := f[rel]
	if !ok {
		return secret.Value{}, errNoFile(rel)
	}
	return v, nil
}

type errNoFile string

func (e errNoFile) Error() string { return "no file " + string(e) }

// NewSession returns a fresh session for ttl.
func NewSession(role string, ttl time.Duration) providers.Session {
	return providers.Session{
		ID: "t" + strings.ToLower(rand.Text()[:12]), Role: role, TTL: ttl,
		ExpiresAt: time.Now().Add(ttl),
	}
}

// Run runs the suite. newHarness is called once per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	ctx := context.Background()
	mint := func(t *testing.T, h Harness, ttl time.Duration) (providers.Session, providers.Grant) {
		t.Helper()
		s := NewSession(h.Role.Name, ttl)
		g, err := h.Provider.Mint(ctx, s, h.Role)
		if err != nil {
			t.Fatalf("mint: %v", err)
		}
		return s, g
	}
	revokeAll := func(t *testing.T, h Harness, g providers.Grant) {
		t.Helper()
		for _, l := range g.Leases {
			if err := h.Provider.Revoke(ctx, l); err != nil {
				t.Fatalf("revoke %s: %v", l.ID, err)
			}
		}
	}

	t.Run("MintUseDenyRevokeReject", func(t *testing.T) {
		h := newHarness(t)
		s, g := mint(t, h, 10*time.Minute)
		if len(g.Leases) == 0 || len(g.Files) == 0 {
			t.Fatalf("grant has %d leases and %d files, want some of each", len(g.Leases), len(g.Files))
		}
		for _, l := range g.Leases {
			if l.SessionID != s.ID || l.Provider != h.Provider.Name() || !strings.HasPrefix(l.ID, h.Provider.Name()+"/") {
				t.Errorf("lease %s: session %q provider %q, want %q %q and a path-shaped id", l.ID, l.SessionID, l.Provider, s.ID, h.Provider.Name())
			}
		}
		if err := h.Use(ctx, g); err != nil {
			t.Fatalf("fresh credentials do not work: %v", err)
		}
		if err := h.Denied(ctx, g); err != nil {
			t.Fatalf("scope not enforced: %v", err)
		}
		revokeAll(t, h, g)
		if err := h.Rejected(ctx, g); err != nil {
			t.Fatalf("after revoke: %v", err)
		}
	})

	t.Run("RevokeIsIdempotent", func(t *testing.T) {
		h := newHarness(t)
		_, g := mint(t, h, 10*time.Minute)
		revokeAll(t, h, g)
		revokeAll(t, h, g)
	})

	t.Run("ExpiryWithinSession", func(t *testing.T) {
		h := newHarness(t)
		s, g := mint(t, h, 10*time.Minute)
		defer revokeAll(t, h, g)
		limit := s.ExpiresAt
		if floor := time.Now().Add(h.MinLife); floor.After(limit) {
			limit = floor
		}
		for _, l := range g.Leases {
			if l.ExpiresAt.IsZero() || l.ExpiresAt.After(limit.Add(5*time.Second)) {
				t.Errorf("lease %s expires %v, session ends %v: a credential must not outlive its session", l.ID, l.ExpiresAt, s.ExpiresAt)
			}
		}
	})

	t.Run("NoSecretInLeases", func(t *testing.T) {
		h := newHarness(t)
		_, g := mint(t, h, 10*time.Minute)
		defer revokeAll(t, h, g)
		stored, err := json.Marshal(g.Leases)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range g.Files {
			for _, line := range strings.Split(v.Reveal(), "\n") {
				line = strings.TrimSpace(line)
				if len(line) >= 16 && strings.Contains(string(stored), line) {
					t.Errorf("a lease record contains content of file %s", name)
				}
			}
		}
	})

	t.Run("RevokeAll", func(t *testing.T) {
		h := newHarness(t)
		_, g1 := mint(t, h, 10*time.Minute)
		_, g2 := mint(t, h, 10*time.Minute)
		ls := append(slices.Clone(g1.Leases), g2.Leases...)
		covered, err := h.Provider.RevokeAll(ctx, ls)
		if err != nil {
			t.Fatalf("revoke all: %v", err)
		}
		// Leases minted by this provider's own config are reached by its
		// provider-wide call: the broker forgets exactly the covered ones.
		for _, l := range ls {
			if !slices.Contains(covered, l.ID) {
				t.Errorf("lease %s, minted by this provider, not reported covered by revoke all (covered %v)", l.ID, covered)
			}
		}
		for i, g := range []providers.Grant{g1, g2} {
			if err := h.Rejected(ctx, g); err != nil {
				t.Errorf("session %d after revoke all: %v", i, err)
			}
		}
		_, g3 := mint(t, h, 10*time.Minute)
		defer revokeAll(t, h, g3)
		if err := h.Use(ctx, g3); err != nil {
			t.Fatalf("a session minted after revoke all does not work: %v", err)
		}
	})

	t.Run("FindOrphans", func(t *testing.T) {
		h := newHarness(t)
		s, g := mint(t, h, 10*time.Minute)
		defer revokeAll(t, h, g)
		found, err := h.Provider.FindOrphans(ctx, s.ID, nil)
		if err != nil {
			t.Fatalf("find orphans: %v", err)
		}
		if len(found) == 0 {
			t.Fatalf("a minted credential unknown to the store was not found")
		}
		for _, l := range found {
			if err := h.Provider.Revoke(ctx, l); err != nil {
				t.Fatalf("revoke orphan %s: %v", l.ID, err)
			}
		}
		if err := h.Rejected(ctx, g); err != nil {
			t.Fatalf("after revoking orphans: %v", err)
		}
		again, err := h.Provider.FindOrphans(ctx, s.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !h.RevokesBySession && len(again) != 0 {
			t.Fatalf("orphans still found after revocation: %d", len(again))
		}
		for _, l := range again { // revoking a revoked session again is harmless
			if err := h.Provider.Revoke(ctx, l); err != nil {
				t.Fatalf("revoke again: %v", err)
			}
		}
		other, err := h.Provider.FindOrphans(ctx, "someone-else", g.Leases)
		if err != nil || len(other) != 0 {
			t.Fatalf("find orphans for another session = %d, %v; want none", len(other), err)
		}
	})
}

// LeasesOf returns the ids of ls, for messages.
func LeasesOf(ls []leases.Lease) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.ID
	}
	return ids
}
