package configs

import (
	"fmt"
	"os"
)

// EffectiveHostID is broker.host_id, or, when it is unset and the store is
// shared (store.driver postgres), this machine's host name. It is empty for
// a single broker: with SQLite there is nobody to tell apart, and a host
// name that changes must not orphan the sessions in the file.
func (c *Config) EffectiveHostID() (string, error) {
	if c.Broker.HostID != "" || c.Store.Driver != "postgres" {
		return c.Broker.HostID, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("broker.host_id is unset and the host name cannot be read: %w; set broker.host_id", err)
	}
	if !validHostID(h) {
		return "", fmt.Errorf("broker.host_id is unset and the host name %q is not a valid host id; set broker.host_id", h)
	}
	return h, nil
}

// validHostID: 1 to 63 of [A-Za-z0-9._-]. Host ids appear in lease session
// ids ("_broker/<host>") and in logs, so they are kept plain.
func validHostID(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}
