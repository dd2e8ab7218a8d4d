package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var intentTests = []test{
	{"RoundTrip", testIntentRoundTrip},
	{"ListOrder", testIntentListOrder},
	{"PutReplaces", testIntentPutReplaces},
	{"Delete", testIntentDelete},
}

func testIntentRoundTrip(t *testing.T, s leases.Store) {
	cases := []leases.Intent{
		newIntent("i-full", "s1", at(0)),
		{ID: "i-zero", SessionID: "s1", Provider: "vault"},
		{ID: "i-empty-data", SessionID: leases.BrokerSessionID, Provider: "vault",
			CreatedAt: at(time.Second), Data: map[string]string{}},
		{ID: "i-odd-data", SessionID: "s1", Provider: "kube", CreatedAt: at(2 * time.Second),
			Data: map[string]string{"": "empty key", "quote\"": "line\nbreak", "ünï": "{\"json\":1}"}},
	}
	for _, in := range cases {
		t.Run(in.ID, func(t *testing.T) {
			ctx := t.Context()
			must(t, s.PutIntent(ctx, in), "PutIntent")
			got, err := s.ListIntents(ctx)
			must(t, err, "ListIntents")
			i := slices.IndexFunc(got, func(g leases.Intent) bool { return g.ID == in.ID })
			if i < 0 {
				t.Fatalf("ListIntents = %q, missing %q", ids(got, intentID), in.ID)
			}
			check(t, "listed intent", got[i], in, normIntent)
		})
	}
}

func testIntentListOrder(t *testing.T, s leases.Store) {
	ctx := t.Context()
	if got, err := s.ListIntents(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListIntents on empty store = %q, %v; want none", ids(got, intentID), err)
	}
	var want []leases.Intent
	for i, id := range []string{"c", "a", "d", "b"} {
		in := newIntent(id, "s1", at(time.Duration(3-i)*time.Second))
		must(t, s.PutIntent(ctx, in), "PutIntent(%q)", id)
		want = append(want, in)
	}
	slices.SortFunc(want, func(a, b leases.Intent) int { return a.CreatedAt.Compare(b.CreatedAt) })
	got, err := s.ListIntents(ctx)
	must(t, err, "ListIntents")
	checkAll(t, "ListIntents ordered by CreatedAt", got, want, normIntent)
}

func testIntentPutReplaces(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.PutIntent(ctx, newIntent("i1", "s1", at(0))), "PutIntent")
	repl := leases.Intent{ID: "i1", SessionID: "s2", Provider: "kube", CreatedAt: at(time.Minute),
		Data: map[string]string{"namespace": "ci"}}
	must(t, s.PutIntent(ctx, repl), "PutIntent (replace)")
	got, err := s.ListIntents(ctx)
	must(t, err, "ListIntents")
	checkAll(t, "intents after replace", got, []leases.Intent{repl}, normIntent)
}

func testIntentDelete(t *testing.T, s leases.Store) {
	ctx := t.Context()
	keep := newIntent("keep", "s1", at(0))
	must(t, s.PutIntent(ctx, keep), "PutIntent")
	must(t, s.PutIntent(ctx, newIntent("gone", "s1", at(time.Second))), "PutIntent")

	must(t, s.DeleteIntent(ctx, "gone"), "DeleteIntent")
	must(t, s.DeleteIntent(ctx, "gone"), "DeleteIntent (again)")
	must(t, s.DeleteIntent(ctx, "never-existed"), "DeleteIntent (missing)")

	got, err := s.ListIntents(ctx)
	must(t, err, "ListIntents")
	checkAll(t, "intents after delete", got, []leases.Intent{keep}, normIntent)
}
