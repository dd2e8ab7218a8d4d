package configs

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// BrokerMetrics configures the Prometheus metrics listener. It is off
// unless Listen is set.
type BrokerMetrics struct {
	// Listen is where /metrics is served: "unix:/abs/path.sock" (a Unix
	// socket, mode 0660) or a loopback "IP:port" such as 127.0.0.1:9464 or
	// [::1]:9464. Any other TCP address is refused: the listener has no
	// authentication (put a reverse proxy in front to expose it).
	Listen string `yaml:"listen"`
}

// metricsUnixPrefix marks a Unix socket in broker.metrics.listen.
const metricsUnixPrefix = "unix:"

// metricsListenHint says how to write broker.metrics.listen.
const metricsListenHint = "write unix:/run/credbroker-metrics/metrics.sock, 127.0.0.1:9464 or [::1]:9464; " +
	"to scrape from another host, put a reverse proxy (with TLS and authentication) in front of the loopback address"

// ParseMetricsListen splits broker.metrics.listen into a network ("unix"
// or "tcp") and an address for net.Listen. It refuses what Validate
// refuses: a relative socket path, a host name, port 0 and any TCP
// address that is not loopback.
func ParseMetricsListen(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, metricsUnixPrefix); ok {
		if path == "" || !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return "", "", fmt.Errorf("%q: the socket path must be absolute and clean, e.g. unix:/run/credbroker-metrics/metrics.sock", s)
		}
		return "unix", path, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not unix:PATH nor IP:port (a host name is not accepted: it could resolve to a non-loopback address)", s)
	}
	if ap.Port() == 0 {
		return "", "", fmt.Errorf("%q: port 0 would pick a random port that no scraper could find", s)
	}
	if ip := ap.Addr().Unmap(); !ip.IsLoopback() || ip.Zone() != "" {
		return "", "", fmt.Errorf("%q is not a loopback address: metrics are served without authentication, so only loopback or a Unix socket is allowed", s)
	}
	return "tcp", ap.String(), nil
}

func (m *BrokerMetrics) validate(ps *problems, p fieldPath) {
	if m.Listen == "" {
		return
	}
	if _, _, err := ParseMetricsListen(m.Listen); err != nil {
		ps.add(p.with("listen"), metricsListenHint, "%s", err.Error())
	}
}
