package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/storetest"
)

// The shared store benchmarks (leases/storetest/bench.go); SQLite commits
// are synced to disk, and the benchmark refuses to run where the temporary
// dir is a memory filesystem (TMPDIR on tmpfs), which would time no disk.
func openBench(b *testing.B) leases.Store {
	dir := b.TempDir()
	if agentenv.CheckMemoryFS(dir) == nil {
		b.Fatalf("%s is on tmpfs or ramfs: the SQLite figures must be measured on a disk (point TMPDIR at one)", dir)
	}
	s, err := Open(b.Context(), filepath.Join(dir, "leases.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkRecordLeases(b *testing.B) { storetest.BenchRecordLeases(b, openBench) }
func BenchmarkListLeases(b *testing.B)   { storetest.BenchListLeases(b, openBench) }
