package broker

import (
	"context"
	"fmt"

	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
)

// EgressStats counts a session's connections through its egress gateway
// since the gateway (or the daemon) started.
type EgressStats = egress.Stats

// egressReport turns a gateway's connection record into one audit record.
func (b *Broker) egressReport(r egress.Record) {
	ev := Event{Event: EvEgressConn, Session: r.Session, Role: r.Role, Reason: r.Reason, Egress: &EgressConn{
		Proto: r.Proto, Host: r.Host, Port: r.Port, Addr: r.Addr, Decision: "deny", Rule: r.Rule,
		BytesUp: r.BytesUp, BytesDown: r.BytesDown, DurationMS: r.Duration.Milliseconds(),
	}}
	if r.Allowed {
		ev.Egress.Decision = "allow" // Reason, if any, is why the relay ended early
	}
	b.metrics.EgressConn(r.Role, ev.Egress.Decision)
	b.record(ev)
}

// openEgress serves the session's egress gateway when its role has an
// egress block in cfg (the config the session was started under). A
// failure fails the start (what was minted is revoked).
func (b *Broker) openEgress(cfg *configs.Config, s leases.Session) error {
	if b.egress == nil {
		return nil
	}
	var ic egress.Interceptor
	if ps := b.proxyOf(s.ID); ps != nil {
		ic = ps
	}
	if _, err := b.egress.OpenWith(cfg, s.ID, s.Role, s.UID, ic); err != nil {
		return fmt.Errorf("open the session's egress gateway: %w", err)
	}
	return nil
}

// closeEgress closes the session's gateway and every connection through
// it, at once; a no-op when it has none.
func (b *Broker) closeEgress(id string) {
	if b.egress != nil {
		b.egress.Close(id)
	}
	b.closeProxy(id) // its placeholders die with it
}

// egressInto adds the session's gateway socket and counts to si.
func (b *Broker) egressInto(si *SessionInfo) {
	if b.egress == nil {
		return
	}
	si.EgressSocket = b.egress.Path(si.ID)
	if st, ok := b.egress.Stats(si.ID); ok {
		si.Egress = &st
	}
}

// CloseEgress closes every session's egress gateway and connection (the
// daemon stops; the gateways of live sessions reopen at its next start).
func (b *Broker) CloseEgress() {
	if b.egress != nil {
		b.egress.CloseAll()
	}
}

// reopenEgress serves again, after a daemon restart, the gateways of this
// broker's active sessions (their connections did not survive the stop),
// with their roles' egress blocks as the config now has them.
func (b *Broker) reopenEgress(ctx context.Context) {
	if b.egress == nil {
		return
	}
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionActive))
	if err != nil {
		b.log.Error("egress: list sessions to reopen their gateways", "err", err)
		return
	}
	cfg := b.config()
	for _, s := range ss {
		if r, ok := cfg.Roles[s.Role]; ok && r.UsesProxy() {
			continue // ended by endProxySessions
		}
		if err := b.openEgress(cfg, s); err != nil {
			b.log.Error("egress: reopen gateway", "session", s.ID, "err", err)
		}
	}
}
