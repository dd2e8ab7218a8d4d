package awssig

import (
	"strings"
)

// Bounds on what a sandbox may send; real clients stay far below them.
const (
	maxAuthLen       = 8 << 10 // an Authorization header
	maxSignedHeaders = 128     // names in SignedHeaders
	maxScopePart     = 64      // region or service
	maxKeyIDLen      = 128     // an access key id
)

const (
	algorithm = "AWS4-HMAC-SHA256"
	// scopeTerminator ends every SigV4 credential scope.
	scopeTerminator = "aws4_request"
)

// authorization is a parsed SigV4 Authorization header.
type authorization struct {
	keyID         string
	date          string // YYYYMMDD of the credential scope
	region        string
	service       string
	signedHeaders []string // lower case, sorted, unique; includes host
	signature     string   // 64 lower-case hex digits
}

// scope is the credential scope, date/region/service/aws4_request.
func (a *authorization) scope() string {
	return a.date + "/" + a.region + "/" + a.service + "/" + scopeTerminator
}

func malformed(what string) *RefusedError {
	return refuse(CodeInvalidRequest, "malformed SigV4 Authorization header: "+what)
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
// SignedHeaders=a;b;c, Signature=hex".
func parseAuthorization(h string) (*authorization, error) {
	if len(h) > maxAuthLen {
		return nil, malformed("longer than 8 KiB")
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != algorithm {
		return nil, unsupportedScheme(alg)
	}
	a := &authorization{}
	var seen [3]bool
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, malformed("a field is not key=value")
		}
		var err error
		switch k {
		case "Credential":
			err = a.parseCredential(v)
			err = once(&seen[0], k, err)
		case "SignedHeaders":
			err = a.parseSignedHeaders(v)
			err = once(&seen[1], k, err)
		case "Signature":
			err = a.parseSignature(v)
			err = once(&seen[2], k, err)
		default:
			return nil, malformed("unknown field (want Credential, SignedHeaders, Signature)")
		}
		if err != nil {
			return nil, err
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return nil, malformed("Credential, SignedHeaders and Signature are all required")
	}
	return a, nil
}

func once(seen *bool, field string, err error) error {
	if err != nil {
		return err
	}
	if *seen {
		return malformed(field + " appears twice")
	}
	*seen = true
	return nil
}

func unsupportedScheme(alg string) *RefusedError {
	switch alg {
	case "AWS4-ECDSA-P256-SHA256":
		return refuse(CodeInvalidRequest, "SigV4a (AWS4-ECDSA-P256-SHA256) is not supported through the credential proxy; use a regional endpoint, which SDKs sign with SigV4")
	case "AWS":
		return refuse(CodeInvalidRequest, "signature version 2 is not supported; use SigV4 (every current SDK and CLI does)")
	default:
		return refuse(CodeAccessDenied, "the request is not signed with AWS SigV4 (AWS4-HMAC-SHA256); configure the AWS client with the session's credentials")
	}
}

func (a *authorization) parseCredential(v string) error {
	parts := strings.Split(v, "/")
	if len(parts) != 5 {
		return malformed("Credential is not key-id/date/region/service/aws4_request")
	}
	a.keyID, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
	switch {
	case a.keyID == "" || len(a.keyID) > maxKeyIDLen || !allIn(a.keyID, isAlnum):
		return malformed("Credential's access key id is not 1 to 128 letters and digits")
	case len(a.date) != 8 || !allIn(a.date, isDigit):
		return malformed("Credential's date is not YYYYMMDD")
	case !scopePart(a.region):
		return malformed("Credential's region is not 1 to 64 of a-z, 0-9, '-', '_' or '.'")
	case !scopePart(a.service):
		return malformed("Credential's service is not 1 to 64 of a-z, 0-9, '-', '_' or '.'")
	case parts[4] != scopeTerminator:
		return malformed("Credential does not end in aws4_request")
	}
	return nil
}

func (a *authorization) parseSignedHeaders(v string) error {
	names := strings.Split(v, ";")
	if len(names) > maxSignedHeaders {
		return malformed("more than 128 SignedHeaders")
	}
	for i, n := range names {
		if n == "" || !allIn(n, isHeaderChar) {
			return malformed("SignedHeaders holds a name that is not a lower-case header name")
		}
		if i > 0 && names[i-1] >= n {
			return malformed("SignedHeaders is not sorted and unique")
		}
	}
	a.signedHeaders = names
	if !a.signs("host") {
		return malformed("SignedHeaders must include host")
	}
	return nil
}

func (a *authorization) parseSignature(v string) error {
	if len(v) != 64 || !allIn(v, isLowerHex) {
		return malformed("Signature is not 64 lower-case hex digits")
	}
	a.signature = v
	return nil
}

// signs reports whether the client signed header name (lower case).
func (a *authorization) signs(name string) bool {
	for _, n := range a.signedHeaders {
		if n == name {
			return true
		}
	}
	return false
}

func scopePart(s string) bool {
	return s != "" && len(s) <= maxScopePart && allIn(s, func(c byte) bool {
		return isDigit(c) || c >= 'a' && c <= 'z' || c == '-' || c == '_' || c == '.'
	})
}

func allIn(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isLowerHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' }
func isAlnum(c byte) bool    { return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// isHeaderChar is a lower-case RFC 9110 token character.
func isHeaderChar(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
