package proxy

import (
	"bytes"
	"encoding/pem"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
)

// TestBundleRoots: the bundle holds the system roots only when the role
// may reach a host the gateway does not terminate; otherwise the sandbox
// trusts the session CA alone.
func TestBundleRoots(t *testing.T) {
	up := newUpstreamCA(t)
	d, err := New(Options{Config: testConfig(t), RootsPEM: up.pem})
	if err != nil {
		t.Fatal(err)
	}
	inject := []configs.Inject{{Env: "API_KEY", Path: "secret/data/api", Field: "key", Hosts: []string{"api.test:443"}, Header: "x-api-key: {}"}}
	cases := []struct {
		name  string
		allow []string
		files bool // vault delivered as files: its endpoint is relayed
		roots bool
	}{
		{"every host bound", []string{"api.test:443"}, false, false},
		{"only the provider endpoint", nil, false, false},
		{"an unbound host", []string{"api.test:443", "other.test:443"}, false, true},
		{"the bound host on another port", []string{"api.test:8443"}, false, true},
		{"the bound host on every port", []string{"api.test:*"}, false, true},
		{"the bound host, port left out (443)", []string{"api.test"}, false, false},
		{"a wildcard over the bound host", []string{"*.test:443"}, false, true},
		{"an address", []string{"127.0.0.1:443"}, false, true},
		{"vault as files", []string{"api.test:443"}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			role := configs.Role{Name: "r", Delivery: configs.DeliveryProxy, Vault: &configs.VaultRole{Policies: []string{"p"}},
				Egress: &configs.Egress{Allow: c.allow}, Inject: inject}
			if c.files {
				role.Vault.Delivery = configs.DeliveryFiles
			}
			s, err := d.Open("s-bundle", role, time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			bundle := s.Files()[BundleFile].Bytes()
			var n int
			for rest := bundle; ; {
				var b *pem.Block
				if b, rest = pem.Decode(rest); b == nil {
					break
				}
				n++
			}
			hasRoots := bytes.Contains(bundle, bytes.TrimSpace(up.pem))
			if hasRoots != c.roots || !bytes.HasSuffix(bundle, s.ca.certPEM) {
				t.Fatalf("bundle of %d certificates: system roots %v, want %v; ends with the session CA: %v",
					n, hasRoots, c.roots, bytes.HasSuffix(bundle, s.ca.certPEM))
			}
			if want := map[bool]int{false: 1, true: 2}[c.roots]; n != want {
				t.Fatalf("bundle holds %d certificates, want %d", n, want)
			}
		})
	}
}
