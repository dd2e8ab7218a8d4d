package kube

import (
	"context"
	"errors"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
)

// A named Role or ClusterRole is checked once and then trusted for
// RoleCheckTTL: Maintain (the broker's loop) checks it again every
// RoleCheckRefresh, so a session start makes no call for it. The check
// is about existence only (a RoleBinding to a missing Role is accepted
// by the API server and grants nothing): a stale answer can make a start
// bind a Role deleted meanwhile, which grants nothing, never more.
// Inline-rule Roles are not cached: every mint syncs them (a widened Role
// is put back by the next start) and Maintain repairs them between starts.
const (
	RoleCheckRefresh = 30 * time.Second
	RoleCheckTTL     = 2 * time.Minute
)

var _ providers.Maintainer = (*Provider)(nil)

// roleChecks records when each named Role was last found.
type roleChecks struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (c *roleChecks) fresh(key string, now time.Time, ttl time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[key]
	return ok && now.Sub(t) < ttl
}

func (c *roleChecks) put(key string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string]time.Time{}
	}
	c.at[key] = now
}

func (c *roleChecks) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.at, key)
}

// roleKey names what role binds: "Role/<ns>/<name>" or "ClusterRole/<name>".
func roleKey(kr *configs.KubeRole) string {
	if kr.ClusterRole != "" {
		return "ClusterRole/" + kr.ClusterRole
	}
	return "Role/" + kr.Namespace + "/" + kr.Role
}

// checkNamed GETs the Role or ClusterRole role binds and records the
// answer: found, it is trusted for RoleCheckTTL; not, the next mint asks
// again (and reports why).
func (p *Provider) checkNamed(ctx context.Context, role configs.Role) error {
	kr := role.Kube
	key := roleKey(kr)
	var err error
	if kr.ClusterRole != "" {
		_, err = p.client.RbacV1().ClusterRoles().Get(ctx, kr.ClusterRole, metav1.GetOptions{})
	} else {
		_, err = p.client.RbacV1().Roles(kr.Namespace).Get(ctx, kr.Role, metav1.GetOptions{})
	}
	if err != nil {
		p.checks.drop(key)
		return err
	}
	p.checks.put(key, p.now())
	return nil
}

// Maintain implements providers.Maintainer: it checks again every named
// Role or ClusterRole last checked RoleCheckRefresh ago or more (each
// once, however many roles bind it), and syncs the inline-rule Roles as
// often.
func (p *Provider) Maintain(ctx context.Context) error {
	now := p.now()
	var errs []error
	seen := map[string]bool{}
	for _, name := range sortedKeys(p.roles) {
		r := p.roles[name]
		key := roleKey(r.Kube)
		if len(r.Kube.Rules) > 0 {
			key = "inline/" + r.Kube.Namespace + "/" + name
		}
		if seen[key] || p.checks.fresh(key, now, RoleCheckRefresh) {
			continue
		}
		seen[key] = true
		if len(r.Kube.Rules) > 0 {
			if _, err := p.ensureInlineRole(ctx, r); err != nil {
				errs = append(errs, err)
				continue
			}
			p.checks.put(key, now)
			continue
		}
		if err := p.checkNamed(ctx, r); err != nil {
			field := "role"
			if r.Kube.ClusterRole != "" {
				field = "cluster_role"
			}
			errs = append(errs, missingRole(r, err, field, "see docs/kubernetes.md"))
		}
	}
	return errors.Join(errs...)
}
