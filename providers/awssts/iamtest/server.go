// Package iamtest is a local stand-in for the two IAM calls the broker's
// revocation makes (GetRolePolicy, PutRolePolicy). No IAM server can be run
// on this machine, so this path is protocol-tested, not run against AWS:
// the server checks each request's action, parameters and SigV4 signature
// (by re-signing it with the expected credentials) and keeps the role
// policies in memory so tests can read what the broker wrote.
package iamtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Server is the fake IAM endpoint.
type Server struct {
	URL   string
	creds aws.Credentials
	roles map[string]bool

	mu       sync.Mutex
	policies map[string]string // role/policy → document
	previous map[string]string // role/policy → the document before the last Put
	stale    map[string]int    // role → Gets still to answer from previous
	jitter   time.Duration
	holds    map[string]*hold // role → the next Put to hold
	Calls    []Call
	failures []string
}

// Call is one accepted request.
type Call struct {
	Action, RoleName, PolicyName, Document string
}

// Start serves until the test ends. Requests must be signed with creds for
// service "iam" in us-east-1 and name one of roles.
func Start(t testing.TB, creds aws.Credentials, roles ...string) *Server {
	s := &Server{creds: creds, roles: map[string]bool{}, policies: map[string]string{},
		previous: map[string]string{}, stale: map[string]int{}, holds: map[string]*hold{}}
	for _, r := range roles {
		s.roles[r] = true
	}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(hs.Close)
	s.URL = hs.URL
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range s.failures {
			t.Errorf("iam stand-in refused a request: %s", f)
		}
	})
	return s
}

// Policy returns the document the broker stored on role (URL-decoded).
func (s *Server) Policy(role, name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.policies[role+"/"+name]
	return d, ok
}

// StaleReads makes the next n GetRolePolicy calls on role answer with the
// document as it was before the last PutRolePolicy, as IAM's eventual
// consistency may.
func (s *Server) StaleReads(role string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stale[role] = n
}

// SetPolicy replaces the stored document of role (as if another writer
// had put it).
func (s *Server) SetPolicy(role, name, doc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies[role+"/"+name] = doc
}

// Jitter holds each GetRolePolicy and PutRolePolicy for a random time
// below d, so concurrent updates interleave in many orders.
func (s *Server) Jitter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jitter = d
}

type hold struct{ arrived, release chan struct{} }

// HoldNextPut makes the next PutRolePolicy on role wait, before it
// stores anything, until release is called; arrived is closed when that
// Put has come in. It stages a writer that read, decided and is about to
// write while another writer runs.
func (s *Server) HoldNextPut(role string) (arrived <-chan struct{}, release func()) {
	h := &hold{arrived: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.holds[role] = h
	s.mu.Unlock()
	var once sync.Once
	return h.arrived, func() { once.Do(func() { close(h.release) }) }
}

func (s *Server) wait() {
	s.mu.Lock()
	d := s.jitter
	s.mu.Unlock()
	if d > 0 {
		time.Sleep(rand.N(d))
	}
}

func (s *Server) fail(w http.ResponseWriter, status int, code, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	s.mu.Lock()
	s.failures = append(s.failures, code+": "+msg)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>1</RequestId></ErrorResponse>`, code, xmlEscape(msg))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := s.verify(r, body); err != nil {
		s.fail(w, http.StatusForbidden, "SignatureDoesNotMatch", "%v", err)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method != http.MethodPost || form.Get("Version") != "2010-05-08" {
		s.fail(w, http.StatusBadRequest, "InvalidInput", "not an IAM query request")
		return
	}
	role, name := form.Get("RoleName"), form.Get("PolicyName")
	if !s.roles[role] {
		s.fail(w, http.StatusNotFound, "NoSuchEntity", "role %q not found", role)
		return
	}
	key := role + "/" + name
	switch form.Get("Action") {
	case "GetRolePolicy":
		s.mu.Lock()
		doc, ok := s.policies[key]
		if s.stale[role] > 0 {
			s.stale[role]--
			doc, ok = s.previous[key]
		}
		s.Calls = append(s.Calls, Call{Action: "GetRolePolicy", RoleName: role, PolicyName: name})
		s.mu.Unlock()
		s.wait()
		if !ok {
			// Expected on first use: not recorded as a failure.
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role policy with name %s cannot be found.</Message></Error><RequestId>1</RequestId></ErrorResponse>`, xmlEscape(name))
			return
		}
		fmt.Fprintf(w, `<GetRolePolicyResponse><GetRolePolicyResult><RoleName>%s</RoleName><PolicyName>%s</PolicyName><PolicyDocument>%s</PolicyDocument></GetRolePolicyResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetRolePolicyResponse>`,
			xmlEscape(role), xmlEscape(name), xmlEscape(url.QueryEscape(doc)))
	case "PutRolePolicy":
		s.wait()
		s.mu.Lock()
		h := s.holds[role]
		delete(s.holds, role)
		s.mu.Unlock()
		if h != nil {
			close(h.arrived)
			<-h.release
		}
		doc := form.Get("PolicyDocument")
		if len(doc) > 10240 {
			s.fail(w, http.StatusConflict, "LimitExceeded", "policy of %d characters exceeds 10240", len(doc))
			return
		}
		s.mu.Lock()
		if prev, ok := s.policies[key]; ok {
			s.previous[key] = prev
		}
		s.policies[key] = doc
		s.Calls = append(s.Calls, Call{Action: "PutRolePolicy", RoleName: role, PolicyName: name, Document: doc})
		s.mu.Unlock()
		fmt.Fprint(w, `<PutRolePolicyResponse><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></PutRolePolicyResponse>`)
	default:
		s.fail(w, http.StatusBadRequest, "InvalidAction", "action %q is not one the broker needs", form.Get("Action"))
	}
}

// verify re-signs the request with the expected credentials and compares.
func (s *Server) verify(r *http.Request, body []byte) error {
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return fmt.Errorf("missing or bad X-Amz-Date %q", amzDate)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	clone, _ := http.NewRequestWithContext(context.Background(), r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	// Re-sign over exactly the headers the client signed (transports add
	// others, such as Accept-Encoding, after signing).
	auth := r.Header.Get("Authorization")
	_, signed, _ := strings.Cut(auth, "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	for _, h := range strings.Split(signed, ";") {
		if v, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
			clone.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	clone.ContentLength = r.ContentLength
	if err := v4.NewSigner().SignHTTP(context.Background(), s.creds, clone, hash, "iam", "us-east-1", t); err != nil {
		return err
	}
	if got, want := r.Header.Get("Authorization"), clone.Header.Get("Authorization"); got != want {
		return fmt.Errorf("signature mismatch (is the request signed for iam/us-east-1 with the broker's key?): got %q, want %q", got, want)
	}
	return nil
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// TakeFailures returns and clears the refused requests (for tests that
// expect a refusal).
func (s *Server) TakeFailures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failures
	s.failures = nil
	return f
}
