package egress

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// clientHelloBytes is what Go's TLS client sends first for server name sni.
func clientHelloBytes(t testing.TB, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: sni, InsecureSkipVerify: sni == ""})
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_ = c.Handshake()
	}()
	_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
	raw, _, err := readClientHello(b)
	if err != nil {
		t.Fatalf("read ClientHello: %v", err)
	}
	return raw
}

func TestReadClientHello(t *testing.T) {
	for _, sni := range []string{"web.test", "Mixed.Case.Test", ""} {
		raw := clientHelloBytes(t, sni)
		got, name, err := readClientHello(bytes.NewReader(append(raw, "after"...)))
		want := map[string]string{"Mixed.Case.Test": "mixed.case.test"}[sni]
		if want == "" {
			want = sni
		}
		if err != nil || name != want || !bytes.Equal(got, raw) {
			t.Errorf("sni %q: name %q, err %v, %d of %d bytes", sni, name, err, len(got), len(raw))
		}
		// Split across two records: still read whole.
		body := raw[5:]
		split := append([]byte{0x16, 3, 1, 0, 10}, body[:10]...)
		split = append(split, 0x16, 3, 1, byte((len(body)-10)>>8), byte(len(body)-10))
		split = append(split, body[10:]...)
		if _, name, err := readClientHello(bytes.NewReader(split)); err != nil || name != want {
			t.Errorf("sni %q split in two records: %q, %v", sni, name, err)
		}
	}
	if _, _, err := readClientHello(bytes.NewReader([]byte("SSH-2.0-x\r\n"))); err != errNotTLS {
		t.Errorf("ssh banner: %v", err)
	}
}
