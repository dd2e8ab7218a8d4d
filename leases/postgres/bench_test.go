package postgres

import (
	"testing"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/leases/storetest"
)

// The shared store benchmarks (leases/storetest/bench.go), as for SQLite.
// The test cluster runs without fsync unless CREDBROKER_PGTEST_DURABLE=1
// (see pgtest.DurableEnv); set it to compare commits with SQLite's synced
// ones.
func openBench(b *testing.B) leases.Store {
	s, err := Open(b.Context(), pgtest.NewDB(b).DSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkRecordLeases(b *testing.B) { storetest.BenchRecordLeases(b, openBench) }
func BenchmarkListLeases(b *testing.B)   { storetest.BenchListLeases(b, openBench) }
