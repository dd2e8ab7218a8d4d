package storetest

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// hostTests run only against stores that implement leases.HostRegistry.
var hostTests = []test{
	{"PutListReplace", func(t *testing.T, s leases.Store) {
		ctx := context.Background()
		r := s.(leases.HostRegistry)
		if hs, err := r.ListHosts(ctx); err != nil || len(hs) != 0 {
			t.Fatalf("ListHosts on an empty store = %v, %v; want none", hs, err)
		}
		puts := []leases.Host{
			{ID: "b", Fingerprints: map[string]string{"vault": "1111", "aws": "2222"}, SeenAt: at(1 * time.Second)},
			{ID: "a", Fingerprints: map[string]string{"vault": "1111"}, SeenAt: at(2 * time.Second)},
			{ID: "", Fingerprints: map[string]string{}, SeenAt: at(3 * time.Second)}, // a single broker
			// b registers again with another config: replaced, not added.
			{ID: "b", Fingerprints: map[string]string{"vault": "3333"}, SeenAt: at(4 * time.Second)},
		}
		for _, h := range puts {
			if err := r.PutHost(ctx, h); err != nil {
				t.Fatalf("PutHost(%q): %v", h.ID, err)
			}
		}
		got, err := r.ListHosts(ctx)
		if err != nil {
			t.Fatalf("ListHosts: %v", err)
		}
		want := []leases.Host{puts[2], puts[1], puts[3]}
		if len(got) != len(want) {
			t.Fatalf("ListHosts = %+v; want %+v", got, want)
		}
		for i, w := range want {
			g := got[i]
			if g.ID != w.ID || !maps.Equal(g.Fingerprints, w.Fingerprints) || !normTime(g.SeenAt).Equal(normTime(w.SeenAt)) {
				t.Errorf("host %d = %+v; want %+v", i, g, w)
			}
		}
	}},
}
