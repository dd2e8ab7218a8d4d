package broker

import (
	"time"

	"github.com/credbroker/credbroker/leases"
)

// StartRequest asks for a new session.
type StartRequest struct {
	Role string `json:"role"`
	// TTL is a Go duration string; empty means the role's ttl.
	TTL string `json:"ttl,omitempty"`
	// UID owns the session dir; nil means the caller.
	UID *int `json:"uid,omitempty"`
}

// SessionInfo is a session as the API shows it (no secrets).
type SessionInfo struct {
	ID        string      `json:"id"`
	Role      string      `json:"role"`
	State     string      `json:"state"`
	UID       int         `json:"uid"`
	CallerUID int         `json:"caller_uid"`
	Dir       string      `json:"dir,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	ExpiresAt time.Time   `json:"expires_at"`
	EndedAt   time.Time   `json:"ended_at,omitzero"`
	EndReason string      `json:"end_reason,omitempty"`
	Leases    []LeaseInfo `json:"leases,omitempty"`
	// Host is the broker host that owns the session (fleet mode).
	Host string `json:"host,omitempty"`
	// EgressSocket is the session's egress gateway socket, empty when its
	// role has no egress (or the gateway is not open on this broker).
	EgressSocket string `json:"egress_socket,omitempty"`
	// Egress counts the connections through the gateway (nil without one).
	Egress *EgressStats `json:"egress,omitempty"`
}

// LeaseInfo is a lease as the API shows it.
type LeaseInfo struct {
	ID          string    `json:"id"`
	Session     string    `json:"session"`
	Provider    string    `json:"provider"`
	Kind        string    `json:"kind"`
	State       string    `json:"state"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	Attempts    int       `json:"attempts,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// IncidentInfo describes the incident lock.
type IncidentInfo struct {
	Reason     string    `json:"reason"`
	DeclaredAt time.Time `json:"declared_at"`
	CallerUID  int       `json:"caller_uid"`
}

// Status is the daemon's state at a glance.
type Status struct {
	// Host is this broker's host id (fleet mode).
	Host      string        `json:"host,omitempty"`
	Incident  *IncidentInfo `json:"incident,omitempty"`
	Sessions  []SessionInfo `json:"sessions"`
	Pending   []LeaseInfo   `json:"pending"`
	Providers []string      `json:"providers"`
	// Fingerprints are this broker's provider config fingerprints.
	Fingerprints map[string]string `json:"fingerprints,omitempty"`
	// Hosts are the brokers sharing the store (status --all-hosts only).
	Hosts []HostInfo `json:"hosts,omitempty"`
}

// HostInfo is one broker sharing the store, as it last registered.
type HostInfo struct {
	Host   string    `json:"host"`
	SeenAt time.Time `json:"seen_at,omitzero"`
	// Fingerprints maps each provider the host has configured to a digest
	// of its non-secret config (configs.ProviderFingerprints).
	Fingerprints map[string]string `json:"fingerprints"`
	// This is set for the broker that answered.
	This bool `json:"this,omitempty"`
	// Differs lists the providers whose config on that host differs from
	// this broker's: revoke --all here cannot reach its credentials of
	// them (that host revokes its own, within incidentGrace).
	Differs []string `json:"differs,omitempty"`
}

// ProviderResult is one provider's part of a revoke-all.
type ProviderResult struct {
	Provider string `json:"provider"`
	// Method is "revoke-all" (one backend call), "per-lease" (fallback) or
	// "revoke-all+per-lease" (the call covered some leases, the rest went
	// one by one).
	Method  string `json:"method"`
	Revoked int    `json:"revoked"`
	Pending int    `json:"pending"`
	// LeftToHosts counts leases of other brokers of a fleet that this
	// broker's provider-wide call did not reach; each broker revokes its
	// own within incidentGrace.
	LeftToHosts int `json:"left_to_hosts,omitempty"`
	// LeftHosts names, sorted, the hosts those leases belong to.
	LeftHosts []string `json:"left_hosts,omitempty"`
	Error     string   `json:"error,omitempty"`
	// RevokedIn is the time from the start of revoke --all until this
	// provider's server rejected everything it had issued.
	RevokedIn time.Duration `json:"revoked_in_ns"`
}

// RevokeReport is what revoke --all (or revoke SESSION) did.
type RevokeReport struct {
	Reason   string `json:"reason"`
	Incident bool   `json:"incident"`
	// Sessions counts the live sessions revoked, of every host in fleet
	// mode; LocalSessions those of this broker, whose dirs it wiped (each
	// other broker wipes its own when the incident reaches it).
	Sessions      int              `json:"sessions"`
	LocalSessions int              `json:"local_sessions"`
	Providers     []ProviderResult `json:"providers"`
	Pending       []LeaseInfo      `json:"pending"`
	Complete      bool             `json:"complete"`
	Duration      string           `json:"duration"`
	// RevokedIn is the time until the last provider finished revoking.
	RevokedIn time.Duration `json:"revoked_in_ns"`
	// WipedIn is the time until every session dir was gone.
	WipedIn time.Duration `json:"wiped_in_ns"`
}

func sessionInfo(s leases.Session, ls []leases.Lease) SessionInfo {
	si := SessionInfo{
		ID: s.ID, Role: s.Role, State: string(s.State), UID: s.UID, CallerUID: s.CallerUID,
		Dir: s.Dir, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, EndedAt: s.EndedAt, EndReason: s.EndReason,
		Host: s.HostID,
	}
	for _, l := range ls {
		si.Leases = append(si.Leases, leaseInfo(l))
	}
	return si
}

func leaseInfo(l leases.Lease) LeaseInfo {
	return LeaseInfo{
		ID: l.ID, Session: l.SessionID, Provider: l.Provider, Kind: l.Kind, State: string(l.State),
		ExpiresAt: l.ExpiresAt, Attempts: l.Attempts, LastError: l.LastError, NextAttempt: l.NextAttempt,
	}
}
