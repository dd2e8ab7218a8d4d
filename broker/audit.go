package broker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Event is one audit record. It names what happened to which session,
// lease and provider, and who asked; it never carries a secret value (the
// type has no field that could hold one).
type Event struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"`
	Session   string    `json:"session,omitempty"`
	Role      string    `json:"role,omitempty"`
	Provider  string    `json:"provider,omitempty"`
	Lease     string    `json:"lease,omitempty"`
	External  string    `json:"external_id,omitempty"`
	CallerUID *int      `json:"caller_uid,omitempty"`
	CallerPID int       `json:"caller_pid,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// Audit event names.
const (
	EvSessionStart    = "session.start"
	EvSessionRefused  = "session.refused"
	EvSessionFailed   = "session.start_failed"
	EvSessionEnd      = "session.end"
	EvLeaseMint       = "lease.mint"
	EvLeaseRenew      = "lease.renew"
	EvLeaseRevoke     = "lease.revoke"
	EvLeaseRevokeFail = "lease.revoke_failed"
	EvOrphanRevoke    = "lease.orphan_revoked"
	EvIncident        = "incident.declare"
	EvIncidentClear   = "incident.clear"
	EvProviderRevoke  = "provider.revoke_all"
	EvDaemonStart     = "daemon.start"
	EvDaemonStop      = "daemon.stop"
)

// AuditLog appends JSON lines to a file opened O_APPEND with mode 0600.
type AuditLog struct {
	mu  sync.Mutex
	f   *os.File
	now func() time.Time
}

// OpenAudit opens (creating) the audit log at path.
func OpenAudit(path string) (*AuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: create dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return &AuditLog{f: f, now: time.Now}, nil
}

// Record appends ev. An audit write failure is returned: callers log it
// loudly, since a security tool that cannot audit must say so.
func (a *AuditLog) Record(ev Event) error {
	if a == nil {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = a.now().UTC()
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	return nil
}

// Close closes the file.
func (a *AuditLog) Close() error {
	if a == nil {
		return nil
	}
	return a.f.Close()
}
