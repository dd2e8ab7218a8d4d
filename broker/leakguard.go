package broker

import (
	"context"
	"fmt"
)

// EvGuardHit records an issued secret found where it should not be.
const EvGuardHit = "guard.hit"

// GuardHit is a leak guard finding reported to the daemon.
type GuardHit struct {
	Session  string `json:"session"`
	Provider string `json:"provider"`
	What     string `json:"what"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Encoding string `json:"encoding"`
	// Fingerprint is the found secret's keyed fingerprint (hex HMAC, as
	// `credbroker guard scan` computes it with the broker's key); never
	// the secret. A hit is accepted only when it is one of Session's.
	Fingerprint string `json:"fingerprint"`
	// Revoke ends the session at once (the default in the CLI).
	Revoke bool `json:"revoke"`
}

// ReportGuardHit checks a finding against the session's fingerprints,
// audits it and, when asked, revokes the session the secret belongs to.
// A hit whose fingerprint is not one of that session's live secrets is
// refused and audited, and the session is left alone: otherwise anyone
// admitted to the socket could end anyone's session by naming it.
// Revoking an ended session is a no-op.
func (b *Broker) ReportGuardHit(ctx context.Context, c Caller, h GuardHit) (SessionInfo, error) {
	where := fmt.Sprintf("%s:%d", h.File, h.Line)
	if b.guard == nil {
		err := fmt.Errorf("%w: guard hit for session %s refused: this daemon keeps no fingerprints to check it against", ErrForbidden, h.Session)
		return SessionInfo{}, b.refuse(Event{Event: EvGuardHitRefused, Session: h.Session}, c, err)
	}
	fp, ok := b.guard.Verify(h.Session, h.Fingerprint)
	if !ok {
		err := fmt.Errorf("%w: guard hit for session %s (%s) refused: its fingerprint is not one of that session's live secrets (report hits with `credbroker guard scan`, which fingerprints them with the broker's key)",
			ErrForbidden, h.Session, where)
		return SessionInfo{}, b.refuse(Event{Event: EvGuardHitRefused, Session: h.Session}, c, err)
	}
	// Provider and kind come from the fingerprint, not from the reporter.
	b.record(Event{Event: EvGuardHit, Session: h.Session, Provider: fp.Provider, CallerUID: uidPtr(c.UID), CallerPID: c.PID,
		Reason: fmt.Sprintf("%s found in %s (%s)", fp.What, where, h.Encoding)})
	b.log.Warn("leak guard: an issued secret was found", "session", h.Session, "provider", fp.Provider, "what", fp.What, "where", where)
	if !h.Revoke {
		return b.GetSession(ctx, h.Session)
	}
	// The finder may not own the session: a verified leak is reason enough.
	return b.EndSession(ctx, Caller{UID: 0, PID: c.PID}, h.Session, "leak guard: "+fp.What+" found in "+where)
}
