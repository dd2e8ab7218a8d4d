package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/storetest"
)

// The shared store benchmarks (leases/storetest/bench.go); SQLite commits
// are synced to disk.
func openBench(b *testing.B) leases.Store {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "leases.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkRecordLeases(b *testing.B) { storetest.BenchRecordLeases(b, openBench) }
func BenchmarkListLeases(b *testing.B)   { storetest.BenchListLeases(b, openBench) }
