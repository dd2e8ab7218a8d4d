// Package hostsdial dials through broker.egress.hosts: the daemon's own
// provider clients reach a name the config maps (for example
// vault.internal → 10.0.0.5) at the mapped address, as the sessions'
// egress gateways do, so one name serves both the broker and its
// sandboxed agents.
package hostsdial

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DialFunc is the signature of net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// New returns a dialer that replaces a mapped host name by its address
// and dials everything else as net.Dialer does. It returns nil when hosts
// is empty (the callers' default dialer then applies).
func New(hosts map[string]netip.Addr) DialFunc {
	if len(hosts) == 0 {
		return nil
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, Map(hosts, addr))
	}
}

// Map returns addr ("host:port") with host replaced by its mapped address,
// or addr unchanged when host is not mapped.
func Map(hosts map[string]netip.Addr, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	a, ok := hosts[strings.TrimSuffix(strings.ToLower(host), ".")]
	if !ok {
		return addr
	}
	return net.JoinHostPort(a.String(), port)
}
