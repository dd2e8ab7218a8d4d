package proxy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
)

// refusal is a request the proxy will not send; its text holds no secret.
type refusal struct {
	msg string
	// report tells the broker of an attempted leak; run once, after the
	// refusal is on the wire (reporting may end the session, which closes
	// this very connection).
	report func()
	once   sync.Once
}

func (r *refusal) Error() string { return r.msg }

// reported runs the refusal's report, once.
func (r *refusal) reported() {
	if r.report != nil {
		r.once.Do(r.report)
	}
}

// prepare checks a request to host:port and puts the real credentials of
// the bindings bs on it. It refuses a request that carries a placeholder
// not bound to host:port (reported as a leak), and a request for a bound
// AWS host whose signature does not verify.
func (s *Session) prepare(r *http.Request, host string, port int, bs []binding) error {
	vals := s.snapshot()
	if vals == nil {
		return &refusal{msg: "the session has ended"}
	}
	bound := map[string]bool{}
	for _, b := range bs {
		for _, n := range b.secretNames() {
			bound[n] = true
		}
	}
	var foreign []value
	for _, n := range names(vals) {
		if !bound[n] {
			foreign = append(foreign, vals[n])
		}
	}
	if v, where := findIn(r, foreign); v != nil {
		return s.leak(host, port, *v, where)
	}
	if r.Body != nil && r.Body != http.NoBody && len(foreign) > 0 {
		if err := s.scanBody(r, host, port, foreign); err != nil {
			return err
		}
	}
	for _, b := range bs {
		if err := s.apply(r, b, vals); err != nil {
			return err
		}
	}
	// The answer is redacted before the sandbox sees it: ask for it plain
	// (the transport asks for gzip itself and unpacks it), unless the
	// header is signed (SigV4), when a packed answer is refused.
	if !strings.Contains(strings.ToLower(r.Header.Get("Authorization")), "accept-encoding") {
		r.Header.Del("Accept-Encoding")
	}
	return nil
}

// maxBufferedBody is the largest request body read whole and checked
// before anything is sent; a larger (or unsized) one is checked as it
// streams, and cut before a placeholder's first byte would go out.
const maxBufferedBody = 1 << 20

// scanBody refuses a body holding a placeholder of foreign.
func (s *Session) scanBody(r *http.Request, host string, port int, foreign []value) error {
	if r.ContentLength >= 0 && r.ContentLength <= maxBufferedBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
		_ = r.Body.Close()
		if err != nil {
			return &refusal{msg: "read the request body: " + err.Error()}
		}
		m := newMatcher(foreign)
		if at, which := m.next(b, 0); at >= 0 {
			return s.leak(host, port, foreign[m.idx[which]], "body")
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		return nil
	}
	r.Body = &scanReader{src: r.Body, m: newMatcher(foreign), onHit: func(v value) error {
		// Mid-stream: the request is already on its way, and the error may
		// not come back as a refusal, so report at once.
		rf := s.leak(host, port, v, "body")
		rf.reported()
		return rf
	}}
	return nil
}

// secretNames are the secrets a binding carries to its hosts.
func (b binding) secretNames() []string {
	switch b.provider {
	case "vault":
		return []string{providers.SecretVaultToken}
	case "kube":
		return []string{providers.SecretKubeToken}
	case "aws":
		return []string{providers.SecretAWSAccessKeyID, providers.SecretAWSSecretKey, providers.SecretAWSSessionToken}
	case "inject":
		return []string{providers.SecretInjectPrefix + b.inject.Env}
	}
	return nil
}

// leak refuses a request that carries an attempted leak; the refusal
// reports it once answered (see refusal.report).
func (s *Session) leak(host string, port int, v value, where string) *refusal {
	rf := &refusal{msg: fmt.Sprintf("a placeholder of the session's %s was sent to %s:%d (%s), which it is not bound to; reported as a leak attempt", v.what, host, port, where)}
	if s.d.o.OnLeak != nil {
		l := Leak{Session: s.id, Host: host, Port: port, What: v.what, Where: where}
		rf.report = func() { s.d.o.OnLeak(l) }
	}
	return rf
}

// findIn looks for a placeholder of vals in r's URL and headers.
func findIn(r *http.Request, vals []value) (*value, string) {
	if len(vals) == 0 {
		return nil, ""
	}
	has := func(s string) *value {
		for i := range vals {
			if strings.Contains(s, vals[i].placeholder) {
				return &vals[i]
			}
		}
		return nil
	}
	q, _ := url.QueryUnescape(r.URL.RawQuery)
	if v := has(r.URL.RawQuery + " " + q + " " + r.URL.EscapedPath() + " " + r.URL.Path); v != nil {
		return v, "url"
	}
	for k, vs := range r.Header {
		for _, h := range vs {
			if v := has(h); v != nil {
				return v, "header " + k
			}
			if d := decodeBasic(h); d != "" {
				if v := has(d); v != nil {
					return v, "header " + k
				}
			}
		}
	}
	return nil, ""
}

// decodeBasic returns the decoded credentials of a Basic header, or "".
func decodeBasic(h string) string {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return ""
	}
	return string(b)
}

// apply puts binding b's real credential on r.
func (s *Session) apply(r *http.Request, b binding, vals map[string]value) error {
	switch b.provider {
	case "vault":
		v, ok := vals[providers.SecretVaultToken]
		if !ok {
			return nil
		}
		if r.Header.Get("X-Vault-Token") == v.placeholder {
			r.Header.Set("X-Vault-Token", v.real.Reveal())
		}
		swapBearer(r, v)
	case "kube":
		if v, ok := vals[providers.SecretKubeToken]; ok {
			swapBearer(r, v)
		}
	case "aws":
		return s.resignAWS(r, vals)
	case "inject":
		if v, ok := vals[providers.SecretInjectPrefix+b.inject.Env]; ok {
			inject(r, b.inject, v)
		}
	}
	return nil
}

// swapBearer replaces "Bearer <placeholder>" by the real token.
func swapBearer(r *http.Request, v value) {
	if a := r.Header.Get("Authorization"); a == "Bearer "+v.placeholder {
		r.Header.Set("Authorization", "Bearer "+v.real.Reveal())
	}
}

// inject puts an inject value on r: where the request carries the
// placeholder it is swapped, where it carries nothing the entry's form is
// added; a value of the sandbox's own is left alone.
func inject(r *http.Request, in *configs.Inject, v value) {
	real := v.real.Reveal()
	switch {
	case in.Header != "":
		name, tmpl, err := configs.ParseInjectHeader(in.Header)
		if err != nil {
			return // validated at load
		}
		if cur := r.Header.Get(name); cur == "" {
			r.Header.Set(name, strings.Replace(tmpl, "{}", real, 1))
		} else if strings.Contains(cur, v.placeholder) {
			r.Header.Set(name, strings.ReplaceAll(cur, v.placeholder, real))
		}
	case in.BasicUser != "":
		user, pass, ok := r.BasicAuth()
		if !ok {
			r.SetBasicAuth(in.BasicUser, real)
		} else if pass == v.placeholder {
			r.SetBasicAuth(user, real)
		}
	case in.Query != "":
		q := r.URL.Query()
		if cur := q.Get(in.Query); cur == "" || cur == v.placeholder {
			q.Set(in.Query, real)
			r.URL.RawQuery = q.Encode()
		}
	}
}

// redactResponse swaps the session's real values in an answer back to
// their placeholders: headers at once, the body as it streams.
func (s *Session) redactResponse(resp *http.Response) error {
	vals := s.snapshot()
	if vals == nil {
		return &refusal{msg: "the session has ended"}
	}
	all := make([]value, 0, len(vals))
	for _, n := range names(vals) {
		all = append(all, vals[n])
	}
	for k, vs := range resp.Header {
		for i, h := range vs {
			resp.Header[k][i] = redactString(h, all)
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil // an upgraded stream (kubectl exec) is relayed as is
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		_ = resp.Body.Close()
		return &refusal{msg: fmt.Sprintf("the server answered with Content-Encoding %q, which the gateway cannot check for real secrets", clip(ce))}
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return nil // no body: Content-Length describes the object (HeadObject)
	}
	same := true
	for _, v := range all {
		same = same && len(v.placeholder) == len(v.real.Reveal())
	}
	body := &redactReader{src: resp.Body, m: realMatcher(all)}
	switch {
	case same:
		resp.Body = body // the length stays what the server said
	case resp.ContentLength >= 0 && resp.ContentLength <= maxBufferedBody:
		// A swap may change the length: redact it whole, say the new one.
		b, err := io.ReadAll(io.LimitReader(body, maxBufferedBody+1))
		_ = body.Close()
		if err != nil {
			return fmt.Errorf("read the answer: %w", err)
		}
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	default:
		resp.Body, resp.ContentLength = body, -1
		resp.Header.Del("Content-Length")
	}
	return nil
}

// redactString swaps real values in s for placeholders.
func redactString(s string, vals []value) string {
	for _, v := range vals {
		if r := v.real.Reveal(); r != "" && strings.Contains(s, r) {
			s = strings.ReplaceAll(s, r, v.placeholder)
		}
	}
	return s
}

var _ io.ReadCloser = (*redactReader)(nil)
