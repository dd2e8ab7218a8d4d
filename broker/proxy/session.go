// Package proxy is proxy delivery (docs/proxy-mode.md): a session's
// sandbox holds only placeholders, and its egress gateway puts the real
// credential on each request to the hosts the credential is bound to.
// For those hosts the gateway terminates TLS with a per-session CA whose
// key never leaves the daemon's memory, checks the request, swaps or
// re-signs, verifies the real server against the real trust, and swaps
// the real values in the answer back to placeholders before the sandbox
// sees a byte. A placeholder on its way to any other host is refused and
// reported as an attempted leak.
//
// Only the daemon links this package (it re-signs AWS requests with the
// AWS SDK's signer): the broker reaches it through an interface.
package proxy

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// Files the session dir gets, relative to it.
const (
	// CAFile is the session CA's certificate.
	CAFile = "proxy/ca.pem"
	// BundleFile is the trust of the variables that replace a client's
	// roots instead of adding to them: the session CA, preceded by the
	// system roots only when the role may reach a host the gateway does
	// not terminate (see Session.Files).
	BundleFile = "proxy/ca-bundle.pem"
)

// sessionDirRef is expanded by the exec wrapper to the mounted dir.
const sessionDirRef = "${CREDBROKER_SESSION_DIR}/"

// systemBundles are read, first found, for the bundle's system roots.
var systemBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

// Leak is a placeholder seen on its way to a host it is not bound to.
type Leak struct {
	Session string
	Host    string
	Port    int
	// What names the placeholder's secret, e.g. "vault token".
	What string
	// Where is "header X", "url" or "body".
	Where string
}

// Options configure a Delivery.
type Options struct {
	Config *configs.Config
	Logger *slog.Logger
	// RootsPEM is the system trust: upstream servers without a provider
	// CA are verified against it, and it starts the bundle file. Nil
	// reads $SSL_CERT_FILE, else the system bundle.
	RootsPEM []byte
	// OnLeak is told of every attempted leak (the broker audits it and,
	// unless broker.egress.leak_action is refuse, revokes the session).
	OnLeak func(Leak)
}

// Delivery opens the proxy side of sessions.
type Delivery struct {
	o     Options
	roots *x509.CertPool
}

// New returns a Delivery; it reads the system trust once.
func New(o Options) (*Delivery, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RootsPEM == nil {
		files := systemBundles
		if f := os.Getenv("SSL_CERT_FILE"); f != "" {
			files = []string{f} // as Go and OpenSSL do
		}
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				o.RootsPEM = b
				break
			}
		}
	}
	roots := x509.NewCertPool()
	if len(o.RootsPEM) > 0 && !roots.AppendCertsFromPEM(o.RootsPEM) {
		return nil, fmt.Errorf("proxy: the system trust bundle holds no certificate")
	}
	return &Delivery{o: o, roots: roots}, nil
}

// value is one swapped secret: its placeholder and the current real value
// (renewals change the real value, never the placeholder).
type value struct {
	name        string
	what        string
	provider    string
	placeholder string
	real        secret.Value
}

// binding says which secrets go to the hosts a rule matches, and how.
type binding struct {
	rule     configs.EgressRule
	provider string // "vault", "aws", "kube" or "inject"
	inject   *configs.Inject
}

// Session is the proxy side of one session.
type Session struct {
	id       string
	d        *Delivery
	role     configs.Role
	ca       *sessionCA
	bindings []binding
	// roots: the bundle holds the system roots, because the role may
	// reach a host whose TLS the sandbox verifies itself.
	roots bool

	mu     sync.RWMutex
	vals   map[string]*value // by secret name
	cas    map[string]*x509.CertPool
	closed bool
}

// Open prepares session id of role, ending at expires: its CA (limited to
// the bound hosts) and its bindings (the proxied providers' endpoints,
// the inject entries' hosts).
func (d *Delivery) Open(id string, role configs.Role, expires time.Time) (*Session, error) {
	s := &Session{id: id, d: d, role: role, vals: map[string]*value{}, cas: map[string]*x509.CertPool{}}
	eps, err := d.o.Config.EgressEndpoints(role)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	for _, ep := range eps {
		if role.DeliveryFor(ep.Provider) == configs.DeliveryProxy {
			s.bindings = append(s.bindings, binding{rule: ep.Rule, provider: ep.Provider})
		}
	}
	for i := range role.Inject {
		in := &role.Inject[i]
		for _, h := range in.Hosts {
			r, err := configs.ParseEgressRule(h)
			if err != nil {
				return nil, fmt.Errorf("proxy: inject %s: %w", in.Env, err)
			}
			s.bindings = append(s.bindings, binding{rule: r, provider: "inject", inject: in})
		}
	}
	if s.roots, err = passesThrough(role, eps, s.bindings); err != nil {
		return nil, err
	}
	var hosts []string
	for _, b := range s.bindings {
		h := b.rule.Host
		if b.rule.IsIP() {
			h = b.rule.Prefix.Addr().String()
		} else if b.rule.Wildcard {
			h = "*." + h
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if s.ca, err = newSessionCA(id, hosts, expires.Add(time.Hour)); err != nil {
		return nil, err
	}
	return s, nil
}

// proxied reports whether the secret name of provider is swapped.
func (s *Session) proxied(provider, name string) bool {
	if strings.HasPrefix(name, providers.SecretInjectPrefix) {
		return true
	}
	return name != "" && s.role.DeliveryFor(provider) == configs.DeliveryProxy
}

// Deliver replaces the real values of provider's grant by placeholders in
// every file and variable, records the real ones for the gateway and
// returns the grant with Secrets holding the placeholders (for the leak
// guard: a placeholder found in a repository is a leak attempt too). A
// renewal keeps the session's placeholders.
func (s *Session) Deliver(provider string, g providers.Grant) (providers.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return g, fmt.Errorf("proxy: session %s has ended", s.id)
	}
	var swaps []string // old, new pairs for strings.Replacer
	var phs []providers.IssuedSecret
	for _, is := range g.Secrets {
		if !s.proxied(provider, is.Name) {
			continue
		}
		real := is.Value.Reveal()
		if real == "" {
			return g, fmt.Errorf("proxy: %s issued an empty %s", provider, is.What)
		}
		v, ok := s.vals[is.Name]
		if !ok {
			v = &value{name: is.Name, what: is.What, provider: provider, placeholder: newPlaceholder(is.Name, real)}
			s.vals[is.Name] = v
		}
		v.real = is.Value
		swaps = append(swaps, real, v.placeholder)
		phs = append(phs, providers.IssuedSecret{Value: secret.New(v.placeholder), What: "placeholder for " + is.What, Expires: is.Expires, Public: is.Public})
	}
	if len(g.UpstreamCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(g.UpstreamCA) {
			return g, fmt.Errorf("proxy: %s's CA holds no certificate", provider)
		}
		s.cas[provider] = pool
	}
	out := g
	out.Secrets = phs
	if len(swaps) > 0 {
		r := strings.NewReplacer(swaps...)
		out.Files = swapAll(g.Files, r)
		out.Env = swapAll(g.Env, r)
	}
	return out, nil
}

func swapAll(m map[string]secret.Value, r *strings.Replacer) map[string]secret.Value {
	if m == nil {
		return nil
	}
	out := make(map[string]secret.Value, len(m))
	for k, v := range m {
		out[k] = secret.New(r.Replace(v.Reveal()))
	}
	return out
}

// passesThrough reports whether role may reach a destination that none
// of bs covers (a binding matches as ruleMatches does: the address of an
// address rule exactly, so EgressRule.Covers's conservative answer for
// CIDRs fits): one whose TLS the gateway relays rather than terminates,
// so the sandbox needs the system roots to verify it. Every allow rule
// and provider endpoint counts (deny rules are ignored: the answer errs
// towards giving the roots).
func passesThrough(role configs.Role, eps []configs.EgressEndpoint, bs []binding) (bool, error) {
	var allowed []configs.EgressRule
	if role.Egress != nil {
		for _, a := range role.Egress.Allow {
			r, err := configs.ParseEgressRule(a)
			if err != nil {
				return false, fmt.Errorf("proxy: egress.allow %q: %w", a, err)
			}
			allowed = append(allowed, r)
		}
	}
	for _, ep := range eps {
		allowed = append(allowed, ep.Rule)
	}
	for _, r := range allowed {
		if !slices.ContainsFunc(bs, func(b binding) bool { return b.rule.Covers(r) }) {
			return true, nil
		}
	}
	return false, nil
}

// Files are the CA certificate and the bundle, for the session dir. When
// the gateway terminates every host the role may reach, the sandbox
// trusts nothing but the session CA, and the bundle holds only it;
// otherwise the system roots come first.
func (s *Session) Files() map[string]secret.Value {
	bundle := s.ca.certPEM
	if s.roots {
		bundle = slices.Concat(s.d.o.RootsPEM, []byte("\n"), s.ca.certPEM)
	}
	return map[string]secret.Value{CAFile: secret.FromBytes(s.ca.certPEM), BundleFile: secret.FromBytes(bundle)}
}

// Env points the usual clients at the session's trust: the variables that
// replace a client's roots get the bundle (the session CA, with the system
// roots when needed), Node's additive one only the CA.
func (s *Session) Env() map[string]secret.Value {
	env := map[string]secret.Value{"NODE_EXTRA_CA_CERTS": secret.New(sessionDirRef + CAFile)}
	for _, k := range []string{"SSL_CERT_FILE", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "VAULT_CACERT"} {
		env[k] = secret.New(sessionDirRef + BundleFile)
	}
	return env
}

// Close forgets the real values: every placeholder is dead from now on.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	clear(s.vals)
}

// snapshot returns the session's values (nil once closed).
func (s *Session) snapshot() map[string]value {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	out := make(map[string]value, len(s.vals))
	for k, v := range s.vals {
		out[k] = *v
	}
	return out
}

// matching returns the bindings whose rule matches host:port.
func (s *Session) matching(host string, port int) []binding {
	var out []binding
	for _, b := range s.bindings {
		if ruleMatches(b.rule, host, port) {
			out = append(out, b)
		}
	}
	return out
}

// Binds implements egress.Interceptor.
func (s *Session) Binds(host string, port int) bool { return len(s.matching(host, port)) > 0 }

// ruleMatches reports whether rule covers host:port.
func ruleMatches(r configs.EgressRule, host string, port int) bool {
	if r.Port != 0 && r.Port != port {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if r.IsIP() {
		return r.Prefix.Addr().String() == host
	}
	if r.Wildcard {
		return strings.HasSuffix(host, "."+r.Host)
	}
	return host == r.Host
}

// upstreamRoots is the trust for host's bindings: the provider's CA when
// it has one, else the system roots.
func (s *Session) upstreamRoots(bs []binding) *x509.CertPool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range bs {
		if p, ok := s.cas[b.provider]; ok {
			return p
		}
	}
	return s.d.roots
}

// names lists the session's secret names, sorted (stable logs and tests).
func names(vals map[string]value) []string { return slices.Sorted(maps.Keys(vals)) }
