package awssig

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newResigner() *Resigner {
	return &Resigner{Placeholder: placeholder, Real: func() Creds { return realCreds }, Now: func() time.Time { return testNow }}
}

// The accepted requests: each is signed by aws-sdk-go-v2 with the
// placeholder, re-signed, sent over the wire and verified with the real
// credentials.
func TestResignAccepts(t *testing.T) {
	const sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	cases := []struct {
		name string
		spec reqSpec
	}{
		{"s3 get unsigned payload", reqSpec{method: "GET", url: "http://127.0.0.1:9000/bucket/key.txt", service: "s3", payload: UnsignedPayload}},
		{"s3 put sha256 payload", reqSpec{method: "PUT", url: "http://s3.us-east-1.amazonaws.com/bucket/dir/key", service: "s3", body: "hello", payload: sha,
			header: map[string]string{"Content-Type": "text/plain", "Content-Md5": "XUFAKrxLKna5cZ2REBfFkg=="}}},
		{"s3 escaped key", reqSpec{method: "GET", url: "http://127.0.0.1:9000/bucket/a%20b%2Bc/%C3%BC%21%27%28%29.txt", service: "s3", payload: UnsignedPayload}},
		{"s3 list query", reqSpec{method: "GET", url: "http://127.0.0.1:9000/bucket?list-type=2&prefix=a%20b%2F&delimiter=%2F&encoding-type=url&x=1&x=0", service: "s3", payload: UnsignedPayload}},
		{"s3 empty-valued query", reqSpec{method: "POST", url: "http://127.0.0.1:9000/bucket/key?uploads", service: "s3", payload: UnsignedPayload}},
		{"s3 multi-value and spaced header", reqSpec{method: "GET", url: "http://127.0.0.1:9000/b/k", service: "s3", payload: UnsignedPayload,
			header: map[string]string{"X-Amz-Meta-Note": "  two   spaces  ", "Range": "bytes=0-9"}}},
		{"s3 put without x-amz-content-sha256", reqSpec{method: "PUT", url: "http://127.0.0.1:9000/bucket/k", service: "s3", body: "hello", noSHAHeader: true}},
		{"sts form body", reqSpec{method: "POST", url: "https://sts.amazonaws.com/", service: "sts", body: "Action=GetCallerIdentity&Version=2011-06-15",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}}},
		{"api path double-encoded", reqSpec{method: "GET", url: "https://abc.execute-api.us-east-1.amazonaws.com/prod/a%2Fb/c%20d?q=%E2%9C%93", service: "execute-api"}},
		{"json body", reqSpec{method: "POST", url: "https://dynamodb.us-east-1.amazonaws.com/", service: "dynamodb", body: `{"TableName":"t"}`,
			header: map[string]string{"X-Amz-Target": "DynamoDB_20120810.DescribeTable", "Content-Type": "application/x-amz-json-1.0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := overWire(t, sdkSigned(t, tc.spec, placeholder, testNow.Add(-time.Minute)))
			in.Header.Set("User-Agent", "changed-after-signing (unsigned, so allowed)")
			if err := newResigner().Resign(in); err != nil {
				t.Fatalf("Resign: %v", err)
			}
			out := overWire(t, in)
			if err := Verify(out, realCreds, testNow, 0); err != nil {
				t.Fatalf("the re-signed request does not verify with the real credentials: %v", err)
			}
			if got := authField(t, out, "Credential"); !strings.HasPrefix(got, realCreds.AccessKeyID+"/") {
				t.Fatalf("Credential = %s, want the real key id", got)
			}
			if got := out.Header.Get("X-Amz-Security-Token"); got != realCreds.SessionToken.Reveal() {
				t.Fatal("X-Amz-Security-Token is not the real session token")
			}
			if got := out.Header.Get("X-Amz-Date"); got != testNow.Format(amzDateFormat) {
				t.Fatalf("X-Amz-Date = %s, want the re-signing time", got)
			}
			body := string(readAll(t, out.Body))
			if body != tc.spec.body {
				t.Fatalf("body = %q, want %q", body, tc.spec.body)
			}
			out.Body = readCloser(body)
			if err := Verify(out, placeholder, testNow, 0); err == nil {
				t.Fatal("the re-signed request still verifies with the placeholder")
			}
		})
	}
}

// Long-term real keys: the placeholder's token is removed, none is added.
func TestResignDropsTokenForLongTermKeys(t *testing.T) {
	s := newResigner()
	longTerm := Creds{AccessKeyID: "AKIAREAL000000000001", Secret: realCreds.Secret}
	s.Real = func() Creds { return longTerm }
	in := overWire(t, sdkSigned(t, reqSpec{method: "GET", url: "http://127.0.0.1:9000/b", service: "s3", payload: UnsignedPayload}, placeholder, testNow))
	if err := s.Resign(in); err != nil {
		t.Fatal(err)
	}
	if v := in.Header.Values("X-Amz-Security-Token"); len(v) != 0 {
		t.Fatal("a session token is left on a request signed with long-term keys")
	}
	if err := Verify(overWire(t, in), longTerm, testNow, 0); err != nil {
		t.Fatalf("verify with the long-term keys: %v", err)
	}
}

func TestResignRefuses(t *testing.T) {
	s3get := reqSpec{method: "GET", url: "http://127.0.0.1:9000/bucket/key?x=1", service: "s3", payload: UnsignedPayload, header: map[string]string{"X-Amz-Meta-A": "1"}}
	sts := reqSpec{method: "POST", url: "https://sts.amazonaws.com/", service: "sts", body: "Action=GetCallerIdentity&Version=2011-06-15"}
	other := func(f func(*Creds)) Creds { c := placeholder; f(&c); return c }
	cases := []struct {
		name   string
		spec   reqSpec
		creds  Creds
		at     time.Duration // signing time relative to now
		tamper func(*http.Request)
		code   string
		reason string
	}{
		{name: "wrong secret", spec: s3get, creds: other(func(c *Creds) { c.Secret = realCreds.Secret }), code: CodeSignatureDoesNotMatch},
		{name: "real key id", spec: s3get, creds: realCreds, code: CodeInvalidAccessKeyID},
		{name: "wrong token", spec: s3get, creds: other(func(c *Creds) { c.SessionToken = realCreds.SessionToken }), code: CodeInvalidToken},
		{name: "no token", spec: s3get, creds: other(func(c *Creds) { c.SessionToken = Creds{}.SessionToken }), code: CodeInvalidToken},
		{name: "tampered header", spec: s3get, tamper: func(r *http.Request) { r.Header.Set("X-Amz-Meta-A", "2") }, code: CodeSignatureDoesNotMatch},
		{name: "tampered path", spec: s3get, tamper: func(r *http.Request) { r.URL.Path = "/bucket/other" }, code: CodeSignatureDoesNotMatch},
		{name: "tampered query", spec: s3get, tamper: func(r *http.Request) { r.URL.RawQuery = "x=2" }, code: CodeSignatureDoesNotMatch},
		{name: "tampered method", spec: s3get, tamper: func(r *http.Request) { r.Method = "DELETE" }, code: CodeSignatureDoesNotMatch},
		{name: "tampered host", spec: s3get, tamper: func(r *http.Request) { r.Host = "169.254.169.254" }, code: CodeSignatureDoesNotMatch},
		{name: "tampered body", spec: sts, tamper: func(r *http.Request) {
			r.Body = http.NoBody
			r.Body = readCloser("Action=GetCallerIdentity&Version=2011-06-16")
		}, code: CodeSignatureDoesNotMatch},
		{name: "tampered body, s3 without x-amz-content-sha256", spec: reqSpec{method: "PUT", url: "http://127.0.0.1:9000/b/k", service: "s3", body: "hello", noSHAHeader: true},
			tamper: func(r *http.Request) { r.Body = readCloser("jello") }, code: CodeSignatureDoesNotMatch},
		{name: "tampered payload hash", spec: s3get, tamper: func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", strings.Repeat("0", 64)) }, code: CodeSignatureDoesNotMatch},
		{name: "date 6 minutes old", spec: s3get, at: -6 * time.Minute, code: CodeRequestTimeTooSkewed},
		{name: "date 6 minutes ahead", spec: s3get, at: 6 * time.Minute, code: CodeRequestTimeTooSkewed},
		{name: "not signed", spec: s3get, tamper: func(r *http.Request) { r.Header.Del("Authorization") }, code: CodeAccessDenied},
		{name: "sigv4a", spec: s3get, tamper: func(r *http.Request) {
			r.Header.Set("Authorization", "AWS4-ECDSA-P256-SHA256 Credential=x/20261207/s3/aws4_request, SignedHeaders=host, Signature=00")
		}, code: CodeInvalidRequest, reason: "SigV4a"},
		{name: "sigv2", spec: s3get, tamper: func(r *http.Request) { r.Header.Set("Authorization", "AWS ASIAPLACEHOLDER00001:c2lnbmF0dXJl") }, reason: "version 2"},
		{name: "host not signed", spec: s3get, tamper: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=host;", "SignedHeaders=", 1))
		}, reason: "must include host"},
		{name: "two authorization headers", spec: s3get, tamper: func(r *http.Request) { r.Header.Add("Authorization", r.Header.Get("Authorization")) }, code: CodeAccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.creds
			if c.AccessKeyID == "" {
				c = placeholder
			}
			in := overWire(t, sdkSigned(t, tc.spec, c, testNow.Add(tc.at)))
			if tc.tamper != nil {
				tc.tamper(in)
			}
			before := in.Header.Get("Authorization")
			err := newResigner().Resign(in)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("Resign = %v, want a *RefusedError", err)
			}
			if tc.code != "" && re.Code != tc.code {
				t.Fatalf("code = %s (%v), want %s", re.Code, err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
			assertSecretFree(t, err)
			if in.Header.Get("Authorization") != before {
				t.Fatal("a refused request was changed")
			}
		})
	}
}

func readCloser(s string) *nopCloser { return &nopCloser{strings.NewReader(s)} }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
