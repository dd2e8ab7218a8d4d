// Package all builds the providers a configuration names. It is the one
// place that knows every provider package.
package all

import (
	"context"
	"log/slog"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/hostsdial"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/vault"
)

// Build constructs and registers every configured provider. A provider whose
// server is unreachable is still registered (minting fails with a clear
// error then, and pending revocations are retried); Check problems are
// logged as warnings.
func Build(ctx context.Context, cfg *configs.Config, journal providers.Journal, log *slog.Logger) (*providers.Registry, error) {
	reg := providers.NewRegistry()
	// Provider addresses may use broker.egress.hosts names, the names the
	// sessions' gateways resolve: the daemon dials them the same way.
	dial := hostsdial.New(cfg.EgressHosts())
	if cfg.Providers.Vault != nil {
		// Epochs are recorded as this host's (fleet mode; none for one broker).
		p, err := vault.New(ctx, *cfg.Providers.Vault, journal, log, vault.WithHostID(cfg.Broker.HostID), vault.WithDial(dial))
		if err != nil {
			return nil, err
		}
		if err := p.Check(ctx); err != nil {
			log.Warn("vault is not ready; sessions that need it will fail until it is", "err", err)
		}
		reg.Register(p)
	}
	if cfg.Providers.AWS != nil {
		opts := []awssts.Option{awssts.WithDial(dial)}
		if rv, ok := journal.(providers.Revocations); ok {
			opts = append(opts, awssts.WithRevocations(rv))
		}
		p, err := awssts.New(ctx, *cfg.Providers.AWS, cfg.Roles, log, opts...)
		if err != nil {
			return nil, err
		}
		if err := p.Check(ctx); err != nil {
			log.Warn("aws is not ready; sessions that need it will fail until it is", "err", err)
		}
		reg.Register(p)
	}
	if cfg.Providers.Kube != nil {
		p, err := kube.New(*cfg.Providers.Kube, cfg.Roles, log, dial)
		if err != nil {
			return nil, err
		}
		// Check also brings the inline-rule Roles in step with the config.
		if err := p.Check(ctx); err != nil {
			log.Warn("kube is not ready; sessions that need it will fail until it is", "err", err)
		}
		reg.Register(p)
	}
	return reg, nil
}
