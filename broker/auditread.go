package broker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// AuditRecord is one record as read back.
type AuditRecord struct {
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	Event
}

// ChainError says where the audit chain breaks and how.
type ChainError struct {
	Line int    // 1-based line in the file
	Seq  uint64 // the record's sequence number, when readable
	Why  string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit log broken at line %d (seq %d): %s", e.Line, e.Seq, e.Why)
}

// VerifyResult summarises a verified log.
type VerifyResult struct {
	Records uint64
	Head    string // hash of the last record: anchor it elsewhere
}

// VerifyAudit reads a log and checks every link of the chain: each record's
// prev must be the SHA-256 of the previous line and seq must go up by one.
// An edited record breaks the link after it, a deleted one leaves a gap in
// seq, reordered ones break both. The last record can only be checked
// against a head hash kept elsewhere (pass it as wantHead, or "").
func VerifyAudit(r io.Reader, wantHead string) (VerifyResult, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	prev, seq, line := genesis, uint64(0), 0
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		if len(raw) == 0 {
			return VerifyResult{}, &ChainError{Line: line, Seq: seq + 1, Why: "empty line"}
		}
		var rec AuditRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return VerifyResult{}, &ChainError{Line: line, Seq: seq + 1, Why: "not a JSON record: " + err.Error()}
		}
		switch {
		case rec.Seq > seq+1:
			return VerifyResult{}, &ChainError{Line: line, Seq: rec.Seq, Why: fmt.Sprintf("seq jumps from %d to %d: records deleted (or reordered)", seq, rec.Seq)}
		case rec.Seq != seq+1:
			return VerifyResult{}, &ChainError{Line: line, Seq: rec.Seq, Why: fmt.Sprintf("expected seq %d: records reordered or duplicated", seq+1)}
		case rec.Prev != prev:
			return VerifyResult{}, &ChainError{Line: line, Seq: rec.Seq, Why: "prev hash does not match the line before: that record was edited"}
		}
		prev, seq = lineHash(raw), rec.Seq
	}
	if err := sc.Err(); err != nil {
		return VerifyResult{}, fmt.Errorf("read audit log: %w", err)
	}
	if wantHead != "" && wantHead != prev {
		return VerifyResult{}, &ChainError{Line: line, Seq: seq, Why: "the last record does not match the anchored head hash: edited or truncated"}
	}
	return VerifyResult{Records: seq, Head: prev}, nil
}

// ReadAudit calls fn for each record (for `audit tail`).
func ReadAudit(r io.Reader, fn func(AuditRecord)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rec AuditRecord
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			fn(rec)
		}
	}
	return sc.Err()
}
