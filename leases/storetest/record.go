package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var recordTests = []test{
	{"DeletesIntent", testRecordDeletesIntent},
	{"WithoutIntent", testRecordWithoutIntent},
	{"EmptyBatch", testRecordEmptyBatch},
	{"DuplicateOfExisting", testRecordDuplicateOfExisting},
	{"DuplicateInBatch", testRecordDuplicateInBatch},
	{"BrokerSession", testRecordBrokerSession},
}

// wantIntents fails unless the store's intents have exactly the ids want, in
// order.
func wantIntents(t *testing.T, s leases.Store, want ...string) {
	t.Helper()
	got, err := s.ListIntents(t.Context())
	must(t, err, "ListIntents")
	if g := ids(got, intentID); !slices.Equal(g, want) {
		t.Errorf("intents = %q, want %q", g, want)
	}
}

// wantLeases fails unless the store's leases have exactly the ids want, in
// ListLeases order.
func wantLeases(t *testing.T, s leases.Store, want ...string) {
	t.Helper()
	got, err := s.ListLeases(t.Context(), "")
	must(t, err, "ListLeases")
	if g := ids(got, leaseID); !slices.Equal(g, want) {
		t.Errorf("leases = %q, want %q", g, want)
	}
}

func testRecordDeletesIntent(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.PutIntent(ctx, newIntent("i1", "s1", at(0))), "PutIntent")
	must(t, s.PutIntent(ctx, newIntent("i2", "s1", at(time.Second))), "PutIntent")
	ls := []leases.Lease{newLease("aws/key/A", "s1", at(0)), newLease("aws/key/B", "s1", at(time.Second))}
	must(t, s.RecordLeases(ctx, "i1", ls), "RecordLeases")

	wantIntents(t, s, "i2")
	got, err := s.ListLeases(ctx, "s1")
	must(t, err, "ListLeases")
	checkAll(t, "recorded leases", got, ls, normLease)
}

func testRecordWithoutIntent(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.PutIntent(ctx, newIntent("i1", "s1", at(0))), "PutIntent")
	must(t, s.RecordLeases(ctx, "", []leases.Lease{newLease("aws/key/A", "s1", at(0))}), "RecordLeases")
	wantIntents(t, s, "i1")
	wantLeases(t, s, "aws/key/A")
}

func testRecordEmptyBatch(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.PutIntent(ctx, newIntent("i1", "s1", at(0))), "PutIntent")
	must(t, s.RecordLeases(ctx, "", nil), "RecordLeases with nothing")
	wantIntents(t, s, "i1")
	must(t, s.RecordLeases(ctx, "i1", nil), "RecordLeases with only an intent")
	wantIntents(t, s)
	wantLeases(t, s)
}

// A failed RecordLeases must leave the store as it was: the intent still
// there (so recovery finds the mint), none of the batch recorded.
func testRecordDuplicateOfExisting(t *testing.T, s leases.Store) {
	ctx := t.Context()
	existing := newLease("aws/key/A", "s1", at(0))
	must(t, s.RecordLeases(ctx, "", []leases.Lease{existing}), "RecordLeases")
	must(t, s.PutIntent(ctx, newIntent("i2", "s2", at(time.Second))), "PutIntent")

	dup := newLease("aws/key/A", "s2", at(time.Minute))
	dup.Data = map[string]string{"other": "data"}
	batch := []leases.Lease{newLease("aws/key/B", "s2", at(time.Second)), dup, newLease("aws/key/C", "s2", at(time.Second))}
	if err := s.RecordLeases(ctx, "i2", batch); err == nil {
		t.Fatal("RecordLeases with an existing lease id succeeded, want an error")
	}

	wantIntents(t, s, "i2")
	wantLeases(t, s, "aws/key/A")
	for _, id := range []string{"aws/key/B", "aws/key/C"} {
		if _, err := s.GetLease(ctx, id); !errors.Is(err, leases.ErrNotFound) {
			t.Errorf("GetLease(%q) after failed RecordLeases: error = %v, want ErrNotFound", id, err)
		}
	}
	got, err := s.GetLease(ctx, existing.ID)
	must(t, err, "GetLease(existing)")
	check(t, "existing lease after failed RecordLeases", got, existing, normLease)
}

func testRecordDuplicateInBatch(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.PutIntent(ctx, newIntent("i1", "s1", at(0))), "PutIntent")
	batch := []leases.Lease{
		newLease("aws/key/A", "s1", at(0)),
		newLease("aws/key/B", "s1", at(0)),
		newLease("aws/key/A", "s1", at(time.Second)),
	}
	if err := s.RecordLeases(ctx, "i1", batch); err == nil {
		t.Fatal("RecordLeases with an id twice in the batch succeeded, want an error")
	}
	wantIntents(t, s, "i1")
	wantLeases(t, s)
}

func testRecordBrokerSession(t *testing.T, s leases.Store) {
	ctx := t.Context()
	// No session row exists for the broker's own leases.
	must(t, s.PutIntent(ctx, newIntent("i1", leases.BrokerSessionID, at(0))), "PutIntent")
	l := newLease("vault/token/epoch", leases.BrokerSessionID, at(0))
	must(t, s.RecordLeases(ctx, "i1", []leases.Lease{l}), "RecordLeases")
	got, err := s.ListLeases(ctx, leases.BrokerSessionID)
	must(t, err, "ListLeases(broker)")
	checkAll(t, "broker leases", got, []leases.Lease{l}, normLease)
	wantIntents(t, s)
}
