// Package testbin locates the test servers that scripts/build-*.sh build
// and cache, and finds free loopback ports for them.
package testbin

import (
	"net"
	"os"
	"path/filepath"
)

// Path returns the binary name-version: $envVar when set, else
// $CREDBROKER_TESTBIN/name-version, else the user cache dir's
// credbroker/testbin (where the build scripts put it).
func Path(envVar, name, version string) string {
	if b := os.Getenv(envVar); b != "" {
		return b
	}
	dir := os.Getenv("CREDBROKER_TESTBIN")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = filepath.Join(os.Getenv("HOME"), ".cache")
		}
		dir = filepath.Join(cache, "credbroker", "testbin")
	}
	return filepath.Join(dir, name+"-"+version)
}

// FreePort returns a TCP port free on host at the time of the call.
func FreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0")) //nolint:noctx // a local port probe
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
