package agentenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Meta is session.json: what the wrapper needs to decide whether a session
// may still be used. It holds no secrets.
type Meta struct {
	ID        string    `json:"id"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Revoked is set by MarkRevoked just before the dir is removed, so a
	// wrapper that races the removal refuses to start the agent.
	Revoked bool      `json:"revoked"`
	Mount   MountHint `json:"mount,omitzero"`
	// UID owns the session dir and its files when it is >= 0 and differs
	// from the broker's euid (which needs root); -1 leaves them to the
	// broker. Not stored in session.json.
	UID int `json:"-"`
}

// MountHint tells a sandbox launcher how the agent expects to see the
// session dir.
type MountHint struct {
	// Target is the path inside the sandbox at which to bind the session
	// dir read-only; the wrapper's default session dir.
	Target string `json:"target,omitempty"`
}

// MarshalMeta renders session.json: indented, times in UTC, trailing
// newline, so the file is stable for golden tests and readable by people.
func MarshalMeta(m Meta) ([]byte, error) {
	m.CreatedAt = m.CreatedAt.UTC()
	m.ExpiresAt = m.ExpiresAt.UTC()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("agentenv: marshal %s: %w", MetaFile, err)
	}
	return append(b, '\n'), nil
}

// ParseMeta parses session.json. Unknown fields are ignored so that an
// older wrapper inside a sandbox can read a newer broker's file; a missing
// id or expiry is an error because the wrapper cannot decide without them.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("agentenv: parse %s: %w", MetaFile, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Meta{}, fmt.Errorf("agentenv: parse %s: trailing data after the JSON object", MetaFile)
	}
	if err := ValidID(m.ID); err != nil {
		return Meta{}, fmt.Errorf("agentenv: parse %s: %w", MetaFile, err)
	}
	if m.ExpiresAt.IsZero() {
		return Meta{}, fmt.Errorf("agentenv: parse %s: expires_at is missing", MetaFile)
	}
	m.UID = -1
	return m, nil
}
