package broker

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// EvProxyLeak records a placeholder seen on its way to a host it is not
// bound to (delivery: proxy).
const EvProxyLeak = "proxy.leak_attempt"

// ProxySession is the proxy side of one session (delivery: proxy;
// implemented by broker/proxy, which only the daemon links).
//
// Contract: Deliver replaces the real values of a provider's grant by
// placeholders in its files and env and returns the grant with Secrets
// holding the placeholders; a renewal's grant gets the same placeholders
// and the gateway uses its new real values from then on. Files and Env
// are added to the session dir. After Close every placeholder is dead
// (the real values are forgotten). The egress.Interceptor methods serve
// the session's gateway connections.
type ProxySession interface {
	egress.Interceptor
	Deliver(provider string, g providers.Grant) (providers.Grant, error)
	Files() map[string]secret.Value
	Env() map[string]secret.Value
	Close()
}

// OpenProxyFunc opens the proxy side of session id of role, which ends at
// expires.
type OpenProxyFunc func(id string, role configs.Role, expires time.Time) (ProxySession, error)

// ProxyLeak is an attempted leak the proxy saw.
type ProxyLeak struct {
	Session, Host, What, Where string
	Port                       int
}

// proxyPrep is the proxy side of a starting session, opened (its CA made)
// in the background while the session's intent is written: the CA's CPU
// time then overlaps the store's fsync instead of following the mint.
// Opening has no effect outside the daemon's memory.
type proxyPrep struct {
	done  chan struct{}
	ps    ProxySession
	err   error
	taken bool
}

// prepareProxy starts opening the proxy side of s when its role delivers
// by proxy (nil otherwise). The caller must call discard when the start
// is over, whatever its outcome.
func (b *Broker) prepareProxy(s leases.Session, role configs.Role) *proxyPrep {
	if !role.UsesProxy() || b.openProxyFn == nil || b.egress == nil {
		return nil
	}
	p := &proxyPrep{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.ps, p.err = b.openProxyFn(s.ID, role, s.ExpiresAt)
	}()
	return p
}

// take waits for the proxy side; from then on the caller owns it.
func (p *proxyPrep) take() (ProxySession, error) {
	<-p.done
	p.taken = true
	return p.ps, p.err
}

// discard closes the proxy side unless it was taken.
func (p *proxyPrep) discard() {
	if p == nil {
		return
	}
	<-p.done
	if !p.taken && p.ps != nil {
		p.ps.Close()
	}
}

// openProxy takes the proxy side prepared for s when its role delivers by
// proxy and swaps the grants' real values for placeholders (grants[i] is
// of provider provs[i]). It returns the files and env the dir gets
// besides.
func (b *Broker) openProxy(s leases.Session, role configs.Role, prep *proxyPrep, provs []string, grants []providers.Grant) (map[string]secret.Value, map[string]secret.Value, error) {
	if !role.UsesProxy() {
		return nil, nil, nil
	}
	if prep == nil { // checkStart refuses such a start before minting
		return nil, nil, fmt.Errorf("role %s delivers by proxy, and this broker runs no egress gateway with proxy delivery", role.Name)
	}
	ps, err := prep.take()
	if err != nil {
		return nil, nil, fmt.Errorf("proxy delivery: %w", err)
	}
	for i := range grants {
		g, err := ps.Deliver(provs[i], grants[i])
		if err != nil {
			ps.Close()
			return nil, nil, fmt.Errorf("proxy delivery: %w", err)
		}
		grants[i] = g
		b.fingerprint(s.ID, provs[i], g.Secrets) // the placeholders
	}
	b.proxyMu.Lock()
	b.proxies[s.ID] = ps
	b.proxyMu.Unlock()
	return ps.Files(), ps.Env(), nil
}

// proxyOf returns session id's proxy side, nil when it has none.
func (b *Broker) proxyOf(id string) ProxySession {
	b.proxyMu.Lock()
	defer b.proxyMu.Unlock()
	if ps, ok := b.proxies[id]; ok {
		return ps
	}
	return nil
}

// closeProxy forgets session id's real values: its placeholders die.
func (b *Broker) closeProxy(id string) {
	b.proxyMu.Lock()
	ps, ok := b.proxies[id]
	delete(b.proxies, id)
	b.proxyMu.Unlock()
	if ok {
		ps.Close()
	}
}

// deliverRenewal passes a renewal's grant through the session's proxy
// side, if it has one.
func (b *Broker) deliverRenewal(s leases.Session, provider string, g providers.Grant) (providers.Grant, error) {
	ps := b.proxyOf(s.ID)
	if ps == nil {
		return g, nil
	}
	out, err := ps.Deliver(provider, g)
	if err != nil {
		return g, err
	}
	b.fingerprint(s.ID, provider, out.Secrets)
	return out, nil
}

// onProxyLeak audits an attempted leak and, unless
// broker.egress.leak_action is "refuse", ends the session.
func (b *Broker) onProxyLeak(l ProxyLeak) {
	reason := fmt.Sprintf("placeholder of the %s sent to %s:%d (%s)", l.What, l.Host, l.Port, l.Where)
	b.record(Event{Event: EvProxyLeak, Session: l.Session, Reason: reason})
	b.log.Warn("proxy: a placeholder was sent to a host it is not bound to", "session", l.Session, "host", l.Host, "what", l.What, "where", l.Where)
	if b.config().Broker.Egress.LeakAction == configs.LeakActionRefuse {
		return
	}
	// Not on the gateway's goroutine: ending closes that very connection.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := b.EndSession(ctx, Caller{UID: 0}, l.Session, "proxy: "+reason); err != nil {
			b.log.Error("proxy: end the session after a leak attempt", "session", l.Session, "err", err)
		}
	}()
}

// endProxySessions ends, at start-up, the active sessions that deliver by
// proxy: their real credentials lived only in the stopped daemon's
// memory, and the broker does not store them.
func (b *Broker) endProxySessions(ctx context.Context) {
	if b.openProxyFn == nil {
		return
	}
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionActive))
	if err != nil {
		b.log.Error("proxy: list sessions to end those that delivered by proxy", "err", err)
		return
	}
	for _, s := range ss {
		role, ok := b.config().Roles[s.Role]
		if !ok || !role.UsesProxy() || b.proxyOf(s.ID) != nil {
			continue
		}
		if _, err := b.EndSession(ctx, Caller{UID: 0}, s.ID, "daemon restarted: a proxy-delivered session's real credentials lived only in the stopped daemon's memory"); err != nil {
			b.log.Error("proxy: end session after restart", "session", s.ID, "err", err)
		}
	}
}

// mergeInto adds extra to m (extra wins).
func mergeInto(m, extra map[string]secret.Value) {
	maps.Copy(m, extra)
}

// intentProviders lists the provider of each intent (mintAll's grants
// are in the same order).
func intentProviders(ins []leases.Intent) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.Provider
	}
	return out
}
