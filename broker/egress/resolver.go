package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// lookupTimeout bounds one DNS lookup.
const lookupTimeout = 5 * time.Second

// Resolver turns names into addresses: broker.egress.hosts first, then
// DNS. The gateway dials exactly the addresses it returns, so a name
// cannot resolve to one address when checked and another when dialed.
type Resolver struct {
	// Hosts maps lower-case names to addresses (broker.egress.hosts).
	Hosts map[string]netip.Addr
	// Lookup resolves a name; nil means net.DefaultResolver.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Resolve returns host's addresses and whether they came from Hosts.
func (r *Resolver) Resolve(ctx context.Context, host string) ([]netip.Addr, bool, error) {
	if r == nil {
		return nil, false, errors.New("no resolver")
	}
	if a, ok := r.Hosts[host]; ok {
		return []netip.Addr{a}, true, nil
	}
	lookup := r.Lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := lookup(ctx, host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, false, fmt.Errorf("%s does not resolve (add it to broker.egress.hosts if it is a private name)", host)
		}
		return nil, false, fmt.Errorf("resolve %s: %w", host, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap().WithZone(""))
	}
	return out, false, nil
}
