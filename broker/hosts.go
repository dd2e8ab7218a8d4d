package broker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// registerEvery is how often the loop refreshes this broker's record in
// the store's host registry (its seen_at and fingerprints).
const registerEvery = 30 * time.Second

// RegisterHost records this broker, with the fingerprints of its provider
// configs (configs.ProviderFingerprints: digests of non-secret fields
// only), in the store's host registry (leases.HostRegistry; a store
// without one keeps nothing). The daemon calls it before serving and the
// loop every registerEvery, so `status --all-hosts` can show each host's
// fingerprints and when it was last seen.
func (b *Broker) RegisterHost(ctx context.Context) error {
	r, ok := b.store.(leases.HostRegistry)
	if !ok {
		return nil
	}
	b.lastRegister = b.now()
	if err := r.PutHost(ctx, leases.Host{ID: b.host, Fingerprints: b.fps, SeenAt: b.lastRegister}); err != nil {
		return fmt.Errorf("register host %q in the store: %w", b.host, err)
	}
	return nil
}

// registerIfDue is the loop's RegisterHost, every registerEvery.
func (b *Broker) registerIfDue(ctx context.Context) {
	if b.now().Sub(b.lastRegister) < registerEvery {
		return
	}
	if err := b.RegisterHost(ctx); err != nil {
		b.log.Warn("refresh this host's record", "err", err)
	}
}

// Fingerprints returns this broker's provider config fingerprints.
func (b *Broker) Fingerprints() map[string]string { return maps.Clone(b.fps) }

// hostInfos lists the hosts the store's registry knows, each marked with
// the providers whose config differs from this broker's (nil when the
// store keeps no registry).
func (b *Broker) hostInfos(ctx context.Context) ([]HostInfo, error) {
	r, ok := b.store.(leases.HostRegistry)
	if !ok {
		return nil, nil
	}
	hs, err := r.ListHosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	out := make([]HostInfo, 0, len(hs))
	for _, h := range hs {
		hi := HostInfo{Host: h.ID, SeenAt: h.SeenAt, Fingerprints: h.Fingerprints, This: h.ID == b.host}
		if !hi.This {
			hi.Differs = differingProviders(b.fps, h.Fingerprints)
		}
		out = append(out, hi)
	}
	return out, nil
}

// differingProviders lists, sorted, the providers other has configured
// whose fingerprint in mine is missing or different: for those, a
// provider-wide revoke-all with mine may not reach other's credentials.
func differingProviders(mine, other map[string]string) []string {
	var out []string
	for p, fp := range other {
		if mine[p] != fp {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
