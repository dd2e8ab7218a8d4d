package agentenv

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWithProxy: every proxy variable of the host, either case, is
// replaced; NO_PROXY is removed (a host listed there would be tried
// directly, and there is no direct route); nothing else changes.
func TestWithProxy(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
	}{
		{"none set", []string{"PATH=/bin", "HOME=/tmp"}},
		{"host proxies", []string{"PATH=/bin", "HTTP_PROXY=http://corp:8080", "https_proxy=http://corp:8080", "NO_PROXY=*", "no_proxy=localhost,.corp", "ALL_PROXY=socks5://corp", "HOME=/tmp"}},
		{"odd case kept", []string{"PATH=/bin", "Http_Proxy=x", "HOME=/tmp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := WithProxy(tc.in, "127.0.0.1:3128", "127.0.0.1:1080")
			want := []string{"PATH=/bin", "HOME=/tmp"}
			if tc.name == "odd case kept" {
				want = []string{"PATH=/bin", "Http_Proxy=x", "HOME=/tmp"}
			}
			want = append(want,
				"HTTP_PROXY=http://127.0.0.1:3128", "HTTPS_PROXY=http://127.0.0.1:3128", "ALL_PROXY=socks5h://127.0.0.1:1080",
				"http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128", "all_proxy=socks5h://127.0.0.1:1080")
			if !slices.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

// TestEgressSocket: only a Unix socket at the path counts; a missing path
// or a regular file there means no egress.
func TestEgressSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{sock: true, file: false, filepath.Join(dir, "missing"): false} {
		t.Setenv(EnvEgressSocket, p)
		if got, ok := EgressSocket(); got != p || ok != want {
			t.Errorf("EgressSocket with %s: %q %v, want %v", p, got, ok, want)
		}
	}
}
