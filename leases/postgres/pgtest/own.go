package pgtest

import "testing"

// Options configure a cluster that a test starts for itself with Start.
type Options struct {
	// Listen are addresses the server listens on besides 127.0.0.1, such
	// as the gateway of a Docker network whose containers must reach it.
	Listen []string
	// Allow are networks (CIDR) from which TestRole may log in with its
	// password, besides the loopback.
	Allow []string
}

// Cluster is a PostgreSQL server of one test's own, which the test may
// stop and start again (its data is kept in between).
type Cluster struct {
	c *cluster
}

// Start starts a cluster for tb alone; tb's cleanup stops it and removes
// its files. A cluster that cannot start fails the test.
func Start(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	c, err := start(o)
	if err != nil {
		tb.Fatalf("pgtest: start PostgreSQL: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.stop(); err != nil {
			tb.Errorf("pgtest: stop PostgreSQL: %v", err)
		}
	})
	return &Cluster{c: c}
}

// NewDB creates an empty database owned by TestRole on the cluster and
// drops it when tb ends.
func (c *Cluster) NewDB(tb testing.TB) DB {
	tb.Helper()
	return newDB(tb, c.c)
}

// Port is the port the server listens on, on every address.
func (c *Cluster) Port() int { return c.c.port }

// Stop shuts the server down the way a crash or an outage looks to its
// clients: every connection is ended at once. Start brings it back. Pools
// from Superuser that were used before keep dead connections: reset them.
func (c *Cluster) Stop(tb testing.TB) {
	tb.Helper()
	if err := c.c.halt(); err != nil {
		tb.Fatalf("pgtest: stop PostgreSQL: %v", err)
	}
}

// Start starts a stopped server again, on the same port with the same
// data, and waits until it accepts logins.
func (c *Cluster) Start(tb testing.TB) {
	tb.Helper()
	if c.c.proc != nil {
		tb.Fatal("pgtest: Start: the server is running")
	}
	if err := c.c.startServer(c.c.port); err != nil {
		tb.Fatalf("pgtest: restart PostgreSQL: %v", err)
	}
	// The cluster's own pool still holds connections to the old server.
	c.c.admin.Reset()
}

// At returns d reached at host (an address the cluster listens on)
// instead of 127.0.0.1.
func (d DB) At(host string) DB {
	d.Host = host
	return d
}
