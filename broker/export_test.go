package broker_test

import (
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

func providerSession(s leases.Session) providers.Session {
	return providers.Session{ID: s.ID, Role: s.Role, TTL: s.ExpiresAt.Sub(s.CreatedAt), ExpiresAt: s.ExpiresAt}
}
