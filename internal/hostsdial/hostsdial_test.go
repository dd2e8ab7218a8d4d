package hostsdial

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

func TestMap(t *testing.T) {
	hosts := map[string]netip.Addr{"vault.test": netip.MustParseAddr("127.0.0.1"), "v6.test": netip.MustParseAddr("::1")}
	for _, tc := range []struct{ in, want string }{
		{"vault.test:8200", "127.0.0.1:8200"},
		{"VAULT.test.:8200", "127.0.0.1:8200"},
		{"v6.test:443", "[::1]:443"},
		{"other.test:443", "other.test:443"},
		{"10.0.0.1:443", "10.0.0.1:443"},
		{"no-port", "no-port"},
	} {
		if got := Map(hosts, tc.in); got != tc.want {
			t.Errorf("Map(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNewDialsTheMappedAddress: a mapped name reaches a loopback listener
// (the name itself resolves nowhere); no map gives no dialer.
func TestNewDialsTheMappedAddress(t *testing.T) {
	if New(nil) != nil {
		t.Fatal("New(nil) is not nil")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	dial := New(map[string]netip.Addr{"nowhere.invalid": netip.MustParseAddr("127.0.0.1")})
	c, err := dial(context.Background(), "tcp", "nowhere.invalid:"+port)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
