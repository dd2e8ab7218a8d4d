package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxHelloBytes bounds the ClientHello the gateway reads before deciding
// (real ones, even with post-quantum key shares, are a few KiB).
const maxHelloBytes = 64 << 10

var errNotTLS = errors.New("the tunnel does not start with a TLS ClientHello")

// readClientHello reads a TLS ClientHello from r, which may span several
// records. It returns every byte read (to be relayed unchanged) and the
// server name it carries ("" when it has none).
func readClientHello(r io.Reader) ([]byte, string, error) {
	var raw, msg []byte
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return raw, "", fmt.Errorf("read TLS record: %w", err)
		}
		raw = append(raw, hdr[:]...)
		if hdr[0] != 0x16 || hdr[1] != 3 {
			return raw, "", errNotTLS
		}
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if n == 0 || n > 16384+2048 || len(raw)+n > maxHelloBytes {
			return raw, "", errors.New("bad TLS record length")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return raw, "", fmt.Errorf("read TLS record: %w", err)
		}
		raw = append(raw, body...)
		msg = append(msg, body...)
		if len(msg) < 4 {
			continue
		}
		if msg[0] != 1 {
			return raw, "", errNotTLS
		}
		need := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if need > maxHelloBytes {
			return raw, "", errors.New("TLS ClientHello too large")
		}
		if len(msg) >= need {
			sni, err := parseClientHello(msg[4:need])
			return raw, sni, err
		}
	}
}

// parseClientHello returns the host_name of the server_name extension of
// a ClientHello body (after the 4-byte handshake header).
func parseClientHello(b []byte) (string, error) {
	c := cursor{b: b}
	c.skip(2 + 32)  // legacy_version, random
	c.skip(c.u8())  // legacy_session_id
	c.skip(c.u16()) // cipher_suites
	c.skip(c.u8())  // legacy_compression_methods
	if c.err == nil && len(c.b) == 0 {
		return "", nil // no extensions
	}
	ext := cursor{b: c.bytes(c.u16())}
	if c.err != nil {
		return "", c.err
	}
	for len(ext.b) > 0 && ext.err == nil {
		typ := ext.u16()
		data := cursor{b: ext.bytes(ext.u16())}
		if typ != 0 {
			continue
		}
		list := cursor{b: data.bytes(data.u16())}
		for len(list.b) > 0 && list.err == nil {
			kind := list.u8()
			name := list.bytes(list.u16())
			if kind == 0 && list.err == nil {
				return checkServerName(string(name))
			}
		}
		if data.err != nil || list.err != nil {
			return "", errors.New("malformed TLS server_name extension")
		}
		return "", nil
	}
	if ext.err != nil {
		return "", ext.err
	}
	return "", nil
}

// checkServerName refuses names that are not plain host names.
func checkServerName(s string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(s), ".")
	for _, c := range []byte(n) {
		if c <= ' ' || c >= 0x7f {
			return "", errors.New("TLS server name holds bytes no host name has")
		}
	}
	return n, nil
}

// cursor reads big-endian fields; the first short read sets err and every
// later read returns zero values.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) bytes(n int) []byte {
	if c.err != nil {
		return nil
	}
	if n > len(c.b) {
		c.err = errors.New("truncated TLS ClientHello")
		c.b = nil
		return nil
	}
	out := c.b[:n]
	c.b = c.b[n:]
	return out
}

func (c *cursor) skip(n int) { c.bytes(n) }

func (c *cursor) u8() int {
	if b := c.bytes(1); b != nil {
		return int(b[0])
	}
	return 0
}

func (c *cursor) u16() int {
	if b := c.bytes(2); b != nil {
		return int(binary.BigEndian.Uint16(b))
	}
	return 0
}
