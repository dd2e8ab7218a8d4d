package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// startBatchTests cover the Batcher methods a session start uses.
var startBatchTests = []test{
	{"BeginSession", func(t *testing.T, s leases.Store) {
		ctx := context.Background()
		b := batcher(t, s)
		sess := newSession("s1", at(0*time.Second))
		sess.State = leases.SessionStarting
		ins := []leases.Intent{newIntent("s1/vault", "s1", at(1*time.Second)), newIntent("s1/awssts", "s1", at(2*time.Second))}
		must(t, b.BeginSession(ctx, sess, ins), "BeginSession")
		got, err := s.GetSession(ctx, "s1")
		must(t, err, "GetSession")
		check(t, "session", got, sess, normSession)
		all, err := s.ListIntents(ctx)
		must(t, err, "ListIntents")
		checkAll(t, "intents", all, ins, normIntent)
		// A second begin of the same id fails whole: no intent of it lands.
		err = b.BeginSession(ctx, sess, []leases.Intent{newIntent("s1/kube", "s1", at(3*time.Second))})
		if err == nil {
			t.Fatal("BeginSession of an existing session id succeeded")
		}
		all, err = s.ListIntents(ctx)
		must(t, err, "ListIntents")
		checkAll(t, "intents after the failed begin", all, ins, normIntent)
	}},
	{"RecordLeaseSets", func(t *testing.T, s leases.Store) {
		ctx := context.Background()
		b := batcher(t, s)
		sess := newSession("s1", at(0*time.Second))
		ins := []leases.Intent{newIntent("s1/vault", "s1", at(1*time.Second)), newIntent("s1/awssts", "s1", at(1*time.Second)), newIntent("s1/kube", "s1", at(1*time.Second))}
		must(t, b.BeginSession(ctx, sess, ins), "BeginSession")
		l1, l2, l3 := newLease("l1", "s1", at(2*time.Second)), newLease("l2", "s1", at(3*time.Second)), newLease("l3", "s1", at(4*time.Second))
		must(t, b.RecordLeaseSets(ctx, []leases.LeaseSet{
			{IntentID: "s1/vault", Leases: []leases.Lease{l1, l2}},
			{IntentID: "s1/awssts", Leases: []leases.Lease{l3}},
		}), "RecordLeaseSets")
		ls, err := s.ListLeases(ctx, "s1")
		must(t, err, "ListLeases")
		checkAll(t, "leases", ls, []leases.Lease{l1, l2, l3}, normLease)
		all, err := s.ListIntents(ctx)
		must(t, err, "ListIntents")
		checkAll(t, "intents", all, ins[2:], normIntent)

		// One duplicate id fails the whole call: the intent stays, the
		// other lease is not inserted.
		err = b.RecordLeaseSets(ctx, []leases.LeaseSet{
			{IntentID: "s1/kube", Leases: []leases.Lease{newLease("l4", "s1", at(5*time.Second))}},
			{Leases: []leases.Lease{l1}},
		})
		if err == nil {
			t.Fatal("RecordLeaseSets with an existing lease id succeeded")
		}
		ls, err = s.ListLeases(ctx, "s1")
		must(t, err, "ListLeases")
		checkAll(t, "leases after the failed call", ls, []leases.Lease{l1, l2, l3}, normLease)
		all, err = s.ListIntents(ctx)
		must(t, err, "ListIntents")
		checkAll(t, "intents after the failed call", all, ins[2:], normIntent)
		must(t, b.RecordLeaseSets(ctx, nil), "RecordLeaseSets(nil)")
	}},
}
