package awssig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// canonicalRequest builds the SigV4 canonical request of r over the headers
// a signed, as the signer of aws-sdk-go-v2 does: the URI as sent (escaped
// once more for every service but S3), the query decoded and re-encoded
// with RFC 3986 escaping, sorted by key then value.
func canonicalRequest(r *http.Request, a *authorization, payloadHash string) (string, error) {
	query, err := canonicalQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r.URL, isS3(a.service)))
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	writeCanonicalHeaders(&b, r, a.signedHeaders)
	b.WriteByte('\n')
	b.WriteString(strings.Join(a.signedHeaders, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String(), nil
}

// isS3 reports whether service signs its URI path unescaped and takes the
// payload hash from X-Amz-Content-Sha256.
func isS3(service string) bool {
	return service == "s3" || service == "s3-object-lambda" || service == "s3express"
}

func canonicalURI(u *url.URL, s3 bool) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if s3 {
		return p
	}
	return escapePath(p)
}

// escapePath percent-encodes every byte of p but the RFC 3986 unreserved
// ones and '/' (so "%" becomes "%25": the double encoding non-S3 services
// expect).
func escapePath(p string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if isAlnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func canonicalQuery(raw string) (string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "", refuse(CodeInvalidRequest, "the query string is not valid URL encoding")
	}
	type kv struct{ k, v string }
	var params []kv
	for k, vs := range q {
		ek := encodeQueryComponent(k)
		for _, v := range vs {
			params = append(params, kv{ek, encodeQueryComponent(v)})
		}
	}
	sort.Slice(params, func(i, j int) bool {
		if params[i].k != params[j].k {
			return params[i].k < params[j].k
		}
		return params[i].v < params[j].v
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String(), nil
}

func encodeQueryComponent(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func writeCanonicalHeaders(b *strings.Builder, r *http.Request, names []string) {
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(':')
		for i, v := range headerValues(r, n) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(collapseSpaces(v))
		}
		b.WriteByte('\n')
	}
}

// headerValues are the values of header name (lower case) as the client
// sent them: Go moves Host, and sometimes Content-Length and
// Transfer-Encoding, out of the header map.
func headerValues(r *http.Request, name string) []string {
	switch name {
	case "host":
		if r.Host != "" {
			return []string{r.Host}
		}
		return []string{r.URL.Host}
	case "content-length":
		if v := r.Header.Values("Content-Length"); len(v) > 0 {
			return v
		}
		if r.ContentLength >= 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		if v := r.Header.Values("Transfer-Encoding"); len(v) > 0 {
			return v
		}
		return r.TransferEncoding
	}
	return r.Header.Values(name)
}

// collapseSpaces trims spaces at both ends and folds runs of spaces into
// one, as SigV4 canonical header values require.
func collapseSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	prev := false
	for i := 0; i < len(s); i++ {
		sp := s[i] == ' '
		if !sp || !prev {
			b.WriteByte(s[i])
		}
		prev = sp
	}
	return b.String()
}

// signingKey derives the SigV4 key of secret for a scope.
func signingKey(secret []byte, date, region, service string) []byte {
	k := hmacSHA256(append([]byte("AWS4"), secret...), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte(scopeTerminator))
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stringToSign is the SigV4 string to sign of a canonical request.
func stringToSign(amzDate, scope, canonical string) string {
	return algorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex([]byte(canonical))
}
