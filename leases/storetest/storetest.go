// Package storetest is the conformance suite that every leases.Store
// implementation runs, so they all keep the contract written in
// leases/store.go.
package storetest

import (
	"testing"

	"github.com/credbroker/credbroker/leases"
)

// test is one conformance check against a fresh, empty store.
type test struct {
	name string
	fn   func(t *testing.T, s leases.Store)
}

// group is a set of checks for one part of the interface.
type group struct {
	name  string
	tests []test
}

// Run runs the suite. open must return a new, empty store each time it is
// called (once per subtest); Run closes it when the subtest ends. Subtests
// run one after another, so open may reuse a single server.
func Run(t *testing.T, open func(t *testing.T) leases.Store) {
	t.Helper()
	groups := []group{
		{"Sessions", sessionTests},
		{"Batch", nil}, // filled below when the store is a leases.Batcher
		{"Intents", intentTests},
		{"Leases", leaseTests},
		{"RecordLeases", recordTests},
		{"Incident", incidentTests},
		{"Concurrency", concurrencyTests},
		{"Context", contextTests},
		{"Fleet", fleetTests},
		{"IncidentWatch", nil}, // filled below when the store is a leases.IncidentWatcher
		{"Hosts", nil},         // filled below when the store is a leases.HostRegistry
		{"Lock", nil},          // filled below when the store is a leases.Locker
		{"Renewal", nil},       // filled below when the store is a leases.RenewalMarker
	}
	for i, g := range groups {
		if g.tests == nil {
			probe := open(t)
			_, batcher := probe.(leases.Batcher)
			_, watcher := probe.(leases.IncidentWatcher)
			_, registry := probe.(leases.HostRegistry)
			_, locker := probe.(leases.Locker)
			_, marker := probe.(leases.RenewalMarker)
			if err := probe.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			switch {
			case g.name == "Batch" && batcher:
				g.tests = append(batchTests[:len(batchTests):len(batchTests)], startBatchTests...)
			case g.name == "IncidentWatch" && watcher:
				g.tests = watchTests
			case g.name == "Hosts" && registry:
				g.tests = hostTests
			case g.name == "Lock" && locker:
				g.tests = lockTests
			case g.name == "Renewal" && marker:
				g.tests = renewalTests
			default:
				continue
			}
			groups[i].tests = g.tests
		}
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					s := open(t)
					t.Cleanup(func() {
						if err := s.Close(); err != nil {
							t.Errorf("Close: %v", err)
						}
					})
					tc.fn(t, s)
				})
			}
		})
	}
}
