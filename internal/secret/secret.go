// Package secret holds the redacting type that carries every secret value
// (tokens, keys, secret payloads) through credbroker.
package secret

import (
	"fmt"
	"io"
	"log/slog"
)

const redacted = "**redacted**"

// Value is a secret. Every way of printing, logging or marshalling it prints
// a placeholder; only Reveal returns the real bytes, and only agentenv (which
// writes the session dir) and providers (which must send it to a server)
// call it.
type Value struct{ b []byte }

// New wraps s as a secret.
func New(s string) Value { return Value{b: []byte(s)} }

// FromBytes wraps b (not copied) as a secret.
func FromBytes(b []byte) Value { return Value{b: b} }

// Reveal returns the secret value. Call it only to hand the value to the
// system that needs it (a file on tmpfs, an HTTP header, a process env).
func (v Value) Reveal() string { return string(v.b) }

// Bytes returns the secret value as bytes (see Reveal).
func (v Value) Bytes() []byte { return v.b }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return len(v.b) == 0 }

// String redacts.
func (v Value) String() string { return redacted }

// Format redacts for every verb and flag (%x, %d, %q, %+v, widths...),
// not only those that go through String: without it %x or %d would print
// the bytes.
func (v Value) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// GoString redacts.
func (v Value) GoString() string { return redacted }

// MarshalJSON redacts.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts.
func (v Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue redacts.
func (v Value) LogValue() slog.Value { return slog.StringValue(redacted) }
