package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

func benchLease(id, session string, issued time.Time) leases.Lease {
	return leases.Lease{ID: id, SessionID: session, Provider: "vault", Kind: "token",
		ExternalID: id, IssuedAt: issued, ExpiresAt: issued.Add(time.Hour), Renewable: true,
		State: leases.LeaseActive, Data: map[string]string{"path": "auth/token/create", "role": "deploy"}}
}

// BenchRecordLeases measures the commit that ends every mint: insert the
// batch and delete its intent. open returns a new, empty store.
func BenchRecordLeases(b *testing.B, open func(b *testing.B) leases.Store) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			ctx := b.Context()
			s := open(b)
			for i := range b.N {
				in := leases.Intent{ID: fmt.Sprintf("i%d", i), SessionID: "s", Provider: "vault", CreatedAt: base}
				if err := s.PutIntent(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			batch := make([]leases.Lease, n)
			b.ResetTimer()
			for i := range b.N {
				for j := range batch {
					batch[j] = benchLease(fmt.Sprintf("vault/token/%d-%d", i, j), "s", base)
				}
				if err := s.RecordLeases(ctx, fmt.Sprintf("i%d", i), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchListLeases lists from a store of 1,000 leases over 50 sessions.
func BenchListLeases(b *testing.B, open func(b *testing.B) leases.Store) {
	ctx := b.Context()
	s := open(b)
	var all []leases.Lease
	for i := range 1000 {
		l := benchLease(fmt.Sprintf("vault/token/%04d", i), fmt.Sprintf("s%02d", i%50), base.Add(time.Duration(i)*time.Second))
		if i%10 == 0 {
			l.State = leases.LeaseRevokePending
		}
		all = append(all, l)
	}
	if err := s.RecordLeases(ctx, "", all); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		want int
		list func() ([]leases.Lease, error)
	}{
		{"all", 1000, func() ([]leases.Lease, error) { return s.ListLeases(ctx, "") }},
		{"session", 20, func() ([]leases.Lease, error) { return s.ListLeases(ctx, "s07") }},
		{"state", 100, func() ([]leases.Lease, error) { return s.ListLeasesByState(ctx, leases.LeaseRevokePending) }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				ls, err := tc.list()
				if err != nil || len(ls) != tc.want {
					b.Fatalf("got %d leases, %v; want %d", len(ls), err, tc.want)
				}
			}
		})
	}
}
