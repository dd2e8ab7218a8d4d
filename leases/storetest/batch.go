package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// batchTests run only against stores that implement leases.Batcher.
var batchTests = []test{
	{"DeleteLeases", func(t *testing.T, s leases.Store) {
		ctx := context.Background()
		b := batcher(t, s)
		if err := s.CreateSession(ctx, newSession("s1", at(0))); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordLeases(ctx, "", []leases.Lease{newLease("l1", "s1", at(1)), newLease("l2", "s1", at(2)), newLease("l3", "s1", at(3))}); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteLeases(ctx, []string{"l1", "l3", "missing"}); err != nil {
			t.Fatalf("DeleteLeases: %v", err)
		}
		ls, err := s.ListLeases(ctx, "")
		if err != nil || len(ls) != 1 || ls[0].ID != "l2" {
			t.Fatalf("after DeleteLeases: %v %v; want only l2", ls, err)
		}
		if err := b.DeleteLeases(ctx, nil); err != nil {
			t.Fatalf("DeleteLeases(nil): %v", err)
		}
	}},
	{"FinishSessions", func(t *testing.T, s leases.Store) {
		ctx := context.Background()
		b := batcher(t, s)
		earlier := at(-time.Minute)
		for _, sess := range []leases.Session{newSession("bare", at(0)), newSession("leased", at(1)), newSession("reasoned", at(2)), newSession("done", at(3))} {
			switch sess.ID {
			case "reasoned":
				sess.State, sess.EndReason, sess.EndedAt = leases.SessionEnding, "first reason", earlier
			case "done":
				sess.State, sess.EndReason, sess.EndedAt = leases.SessionEnded, "long ago", earlier
			}
			if err := s.CreateSession(ctx, sess); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RecordLeases(ctx, "", []leases.Lease{newLease("l1", "leased", at(1))}); err != nil {
			t.Fatal(err)
		}
		ended, err := b.FinishSessions(ctx, []string{"bare", "leased", "reasoned", "done", "missing"}, "incident", at(time.Hour))
		if err != nil {
			t.Fatalf("FinishSessions: %v", err)
		}
		slices.Sort(ended)
		if !slices.Equal(ended, []string{"bare", "reasoned"}) {
			t.Fatalf("ended = %v, want [bare reasoned]", ended)
		}
		want := map[string]struct {
			state  leases.SessionState
			reason string
			ended  time.Time
		}{
			"bare":     {leases.SessionEnded, "incident", at(time.Hour)},
			"leased":   {leases.SessionEnding, "incident", at(time.Hour)},
			"reasoned": {leases.SessionEnded, "first reason", earlier},
			"done":     {leases.SessionEnded, "long ago", earlier},
		}
		for id, w := range want {
			got, err := s.GetSession(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != w.state || got.EndReason != w.reason || !normTime(got.EndedAt).Equal(normTime(w.ended)) {
				t.Errorf("%s = %s %q %v; want %s %q %v", id, got.State, got.EndReason, got.EndedAt, w.state, w.reason, w.ended)
			}
		}
	}},
}

func batcher(t *testing.T, s leases.Store) leases.Batcher {
	t.Helper()
	b, ok := s.(leases.Batcher)
	if !ok {
		t.Fatalf("%T does not implement leases.Batcher", s)
	}
	return b
}
