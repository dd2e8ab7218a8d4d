package broker

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeRequest: the daemon's request decoding never panics and
// rejects bad bodies with a bad-request answer that says why.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"role":"agent-readonly","ttl":"20m","uid":1000}`))
	f.Add([]byte(`{"reason":"incident"}`))
	f.Add([]byte(`{"session":"s-x","file":"a","line":3,"revoke":true}`))
	f.Add([]byte(`{"role":1}`))
	f.Add([]byte(`{"unknown":true}`))
	f.Add([]byte(`[`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&StartRequest{}, &revokeAllRequest{}, &GuardHit{}} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body))
			req.Body = http.MaxBytesReader(rec, req.Body, maxBody)
			if decode(rec, req, v) {
				continue
			}
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "bad request: request body") {
				t.Fatalf("rejection %d %q", rec.Code, rec.Body.String())
			}
		}
	})
}

// FuzzVerifyAudit: the verifier never panics on any input, and a log it
// accepts has as many records as lines.
func FuzzVerifyAudit(f *testing.F) {
	dir := f.TempDir()
	a, err := OpenAudit(dir + "/audit.log")
	if err != nil {
		f.Fatal(err)
	}
	for i := range 3 {
		_ = a.Record(Event{Event: EvSessionStart, Session: "s-" + string(rune('a'+i))})
	}
	a.Close()
	b, _ := readFile(dir + "/audit.log")
	f.Add(b)
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + genesis + `"}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := VerifyAudit(bytes.NewReader(data), "")
		if err != nil {
			return
		}
		lines := bytes.Count(bytes.TrimRight(data, "\n"), []byte("\n")) + 1
		if len(bytes.TrimSpace(data)) == 0 {
			lines = 0
		}
		if int(res.Records) != lines {
			t.Fatalf("verified %d records in %d lines", res.Records, lines)
		}
	})
}
