package configs

import (
	"strings"
	"testing"
)

func TestParseMetricsListen(t *testing.T) {
	tests := []struct {
		in, network, addr, err string
	}{
		{in: "127.0.0.1:9464", network: "tcp", addr: "127.0.0.1:9464"},
		{in: "127.8.9.10:1", network: "tcp", addr: "127.8.9.10:1"},
		{in: "[::1]:9464", network: "tcp", addr: "[::1]:9464"},
		{in: "[::ffff:127.0.0.1]:9464", network: "tcp", addr: "[::ffff:127.0.0.1]:9464"},
		{in: "unix:/run/credbroker-metrics/metrics.sock", network: "unix", addr: "/run/credbroker-metrics/metrics.sock"},
		{in: "0.0.0.0:9464", err: "not a loopback address"},
		{in: "[::]:9464", err: "not a loopback address"},
		{in: "192.168.1.10:9464", err: "not a loopback address"},
		{in: "[fe80::1%eth0]:9464", err: "not a loopback address"},
		{in: "localhost:9464", err: "a host name is not accepted"},
		{in: ":9464", err: "is not unix:PATH nor IP:port"},
		{in: "127.0.0.1", err: "is not unix:PATH nor IP:port"},
		{in: "127.0.0.1:0", err: "port 0"},
		{in: "unix:", err: "must be absolute"},
		{in: "unix:metrics.sock", err: "must be absolute"},
		{in: "unix:/run/../tmp/m.sock", err: "must be absolute and clean"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			network, addr, err := ParseMetricsListen(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseMetricsListen(%q) = %s %s, %v; want an error containing %q", tt.in, network, addr, err, tt.err)
				}
				return
			}
			if err != nil || network != tt.network || addr != tt.addr {
				t.Fatalf("ParseMetricsListen(%q) = %q %q, %v; want %q %q", tt.in, network, addr, err, tt.network, tt.addr)
			}
		})
	}
}

// TestMetricsListenErrors: a refused broker.metrics.listen names the file,
// line and field, and says how to expose the metrics safely.
func TestMetricsListenErrors(t *testing.T) {
	tests := []struct{ name, value, msg string }{
		{"any address", "0.0.0.0:9464", "not a loopback address"},
		{"host name", "localhost:9464", "a host name is not accepted"},
		{"relative socket", "unix:metrics.sock", "must be absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			yaml := "broker:\n  metrics:\n    listen: " + tt.value + " " + marker + "\n" + vaultProv + roleR
			wantOneError(t, yaml, "broker.metrics.listen", tt.msg, "put a reverse proxy")
		})
	}
}

// TestMetricsOffByDefault: with no broker.metrics block nothing listens.
func TestMetricsOffByDefault(t *testing.T) {
	isolateEnv(t)
	c, err := Load(writeConfig(t, vaultProv+roleR))
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.Metrics.Listen != "" {
		t.Fatalf("broker.metrics.listen defaults to %q, want it unset (no listener)", c.Broker.Metrics.Listen)
	}
}
