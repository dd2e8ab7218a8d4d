package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	// Egress connection fields (event egress.connection): never a URL
	// path or query.
	Egress *EgressConn `json:"egress,omitempty"`
}

// EgressConn is one connection through a session's egress gateway.
type EgressConn struct {
	// Proto is http, connect or socks5.
	Proto string `json:"proto,omitempty"`
	Host  string `json:"host,omitempty"`
	Port  int    `json:"port,omitempty"`
	// Addr is the address dialed (after the gateway's own resolution).
	Addr string `json:"addr,omitempty"`
	// Decision is allow or deny; Rule the config entry that decided.
	Decision   string `json:"decision"`
	Rule       string `json:"rule,omitempty"`
	BytesUp    int64  `json:"bytes_up"`
	BytesDown  int64  `json:"bytes_down"`
	DurationMS int64  `json:"duration_ms"`
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
	EvProviderNotice  = "provider.notice"
	EvDaemonStart     = "daemon.start"
	EvDaemonStop      = "daemon.stop"
	EvEgressConn      = "egress.connection"
)

// AuditLog appends hash-chained JSON lines to a file opened O_APPEND with
// mode 0600: every record carries its sequence number and the SHA-256 of
// the previous line, so `credbroker audit verify` finds any edit, deletion
// or reordering (see VerifyAudit).
type AuditLog struct {
	mu     sync.Mutex
	f      *os.File
	now    func() time.Time
	seq    uint64
	prev   string
	mirror io.Writer // optional copy (syslog)
	onFail func()    // optional: called for each record not written
}

// chained is what is written: the event plus its place in the chain.
type chained struct {
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	Event
}

// genesis is the prev hash of the first record.
var genesis = strings.Repeat("0", 64)

// OpenAudit opens (creating) the audit log at path and continues its chain.
func OpenAudit(path string) (*AuditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: create dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	a := &AuditLog{f: f, now: time.Now, prev: genesis}
	last, err := lastLine(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: read the end of %s: %w", path, err)
	}
	if len(last) > 0 {
		var c chained
		if err := json.Unmarshal(last, &c); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: the last record of %s is not valid (run `credbroker audit verify`): %w", path, err)
		}
		a.seq, a.prev = c.Seq, lineHash(last)
	}
	return a, nil
}

// MirrorTo copies every record to w as well (e.g. syslog).
func (a *AuditLog) MirrorTo(w io.Writer) { a.mirror = w }

// OnWriteFailure makes Record call f for each record it cannot write (the
// metrics count them). Call it before the log is used; f must return at
// once.
func (a *AuditLog) OnWriteFailure(f func()) { a.onFail = f }

// Record appends ev. An audit write failure is returned: callers log it
// loudly, since a security tool that cannot audit must say so.
func (a *AuditLog) Record(ev Event) error {
	if a == nil {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = a.now().UTC()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b, err := json.Marshal(chained{Seq: a.seq + 1, Prev: a.prev, Event: ev})
	if err != nil {
		a.failed()
		return fmt.Errorf("audit: encode: %w", err)
	}
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		a.failed()
		return fmt.Errorf("audit: write: %w", err)
	}
	a.seq++
	a.prev = lineHash(b)
	if a.mirror != nil {
		_, _ = a.mirror.Write(b)
	}
	return nil
}

// failed reports a record that was not written.
func (a *AuditLog) failed() {
	if a.onFail != nil {
		a.onFail()
	}
}

// Close closes the file.
func (a *AuditLog) Close() error {
	if a == nil {
		return nil
	}
	return a.f.Close()
}

func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// lastLine returns the last non-empty line of f (reading backwards in
// blocks, so a long log is not read whole).
func lastLine(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	var tail []byte
	for off := size; off > 0; {
		n := min(int64(64<<10), off)
		off -= n
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
			return nil, err
		}
		tail = append(buf, tail...)
		t := bytes.TrimRight(tail, "\n")
		if i := bytes.LastIndexByte(t, '\n'); i >= 0 {
			return t[i+1:], nil
		}
		if off == 0 {
			return t, nil
		}
	}
	return nil, nil
}
