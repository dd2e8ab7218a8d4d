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
	// Revoke ends the session at once (the default in the CLI).
	Revoke bool `json:"revoke"`
}

// ReportGuardHit audits a finding and, when asked, revokes the session the
// secret belongs to. Revoking an ended session is a no-op.
func (b *Broker) ReportGuardHit(ctx context.Context, c Caller, h GuardHit) (SessionInfo, error) {
	where := fmt.Sprintf("%s:%d", h.File, h.Line)
	b.record(Event{Event: EvGuardHit, Session: h.Session, Provider: h.Provider, CallerUID: uidPtr(c.UID), CallerPID: c.PID,
		Reason: fmt.Sprintf("%s found in %s (%s)", h.What, where, h.Encoding)})
	b.log.Warn("leak guard: an issued secret was found", "session", h.Session, "provider", h.Provider, "what", h.What, "where", where)
	if !h.Revoke {
		return b.GetSession(ctx, h.Session)
	}
	// The finder may not own the session: a leak is reason enough.
	return b.EndSession(ctx, Caller{UID: 0, PID: c.PID}, h.Session, "leak guard: "+h.What+" found in "+where)
}
