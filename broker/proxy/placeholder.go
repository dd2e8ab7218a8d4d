package proxy

import (
	"crypto/rand"
	"encoding/base64"
	"strings"

	"github.com/credbroker/credbroker/providers"
)

// InjectPrefix marks the placeholders of inject values, so a reader (or
// the leak guard) can tell one at a glance.
const InjectPrefix = "cbph_"

const (
	base62    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	base64Std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	// awsKeyChars are the characters of AWS access key ids after the
	// prefix (base32).
	awsKeyChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	// minRandom is the least number of random characters of a placeholder
	// (at least 128 bits from the smallest alphabet used, base32).
	minRandom = 26
)

// newPlaceholder returns a random value of the same shape as real, for
// the secret called name: an ASIA… key id, a 40-character secret key, a
// vault token with the real one's prefix, a JWT-shaped Kubernetes token,
// a "cbph_"-marked string for inject values. Where the shape allows it the
// placeholder has the real value's length, so a response that echoes the
// value keeps its length when the gateway swaps it back.
func newPlaceholder(name, real string) string {
	switch {
	case name == providers.SecretAWSAccessKeyID:
		// An identifier, not a secret (the secret key authenticates):
		// AWS's own are ASIA + 16; MinIO's may be shorter.
		return "ASIA" + random(awsKeyChars, max(len(real)-4, 8))
	case name == providers.SecretAWSSecretKey:
		return random(base64Std, max(len(real), 22)) // at least 132 bits
	case name == providers.SecretAWSSessionToken:
		return random(base64Std, max(len(real), minRandom))
	case name == providers.SecretVaultToken:
		prefix := ""
		if i := strings.IndexByte(real, '.'); i > 0 && i <= 4 {
			prefix = real[:i+1] // hvs., hvb., s.
		}
		return prefix + random(base62, max(len(real)-len(prefix), 22)) // ≥ 130 bits
	case name == providers.SecretKubeToken:
		return kubePlaceholder(len(real))
	case strings.HasPrefix(name, providers.SecretInjectPrefix):
		return InjectPrefix + random(base62, max(len(real)-len(InjectPrefix), minRandom))
	}
	return InjectPrefix + random(base62, 40)
}

// kubePlaceholder is shaped like a service-account JWT (three base64url
// parts), which clients pass on without reading; its signature part pads
// it to n characters when n allows.
func kubePlaceholder(n int) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","kid":"credbroker-placeholder"}`))
	payload := enc.EncodeToString([]byte(`{"iss":"credbroker","sub":"placeholder","jti":"` + random(base62, 32) + `"}`))
	return header + "." + payload + "." + random(base62, max(n-len(header)-len(payload)-2, 86))
}

// random returns n characters drawn uniformly from alphabet.
func random(alphabet string, n int) string {
	out := make([]byte, n)
	buf := make([]byte, n*2)
	limit := 256 - 256%len(alphabet) // rejection sampling: no modulo bias
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			panic("proxy: crypto/rand failed: " + err.Error()) // never returns an error on Linux
		}
		for _, b := range buf {
			if int(b) < limit && i < n {
				out[i] = alphabet[int(b)%len(alphabet)]
				i++
			}
		}
	}
	return string(out)
}
