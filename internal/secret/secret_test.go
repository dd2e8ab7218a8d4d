package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	const real = "hvs.super-secret-token"
	v := New(real)
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "v", v)
	js, err := json.Marshal(struct{ V Value }{v})
	if err != nil {
		t.Fatal(err)
	}
	outs := map[string]string{
		"%v":   fmt.Sprintf("%v", v),
		"%s":   fmt.Sprintf("%s", v), //nolint:staticcheck // the point is to go through fmt
		"%+v":  fmt.Sprintf("%+v", struct{ V Value }{v}),
		"%#v":  fmt.Sprintf("%#v", v),
		"json": string(js),
		"slog": logBuf.String(),
	}
	for how, out := range outs {
		if strings.Contains(out, real) {
			t.Errorf("%s printed the secret", how)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s = %q, want the redaction marker", how, out)
		}
	}
	if v.Reveal() != real {
		t.Errorf("Reveal did not return the value")
	}
}

// TestValueEveryVerbRedacts: every fmt verb and flag, on the value, a
// pointer to it and a struct holding it, prints the redaction marker and
// none of the bytes (%x and %d would print them through the []byte field
// without Format).
func TestValueEveryVerbRedacts(t *testing.T) {
	const real = "hvs.super-secret-token"
	v := New(real)
	type holder struct{ Token Value }
	forms := []string{
		real,
		fmt.Sprintf("%x", real), fmt.Sprintf("%X", real), fmt.Sprintf("% x", real),
		fmt.Sprint([]byte(real)), fmt.Sprintf("%d", []byte(real)), //nolint:staticcheck // QF1010: the byte form is the point
		fmt.Sprintf("%q", real), fmt.Sprintf("%o", []byte(real)),
	}
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "% x", "%d", "%o", "%b", "%c", "%U", "%20s", "%-8.3q", "%+q", "%#x"} {
		for what, arg := range map[string]any{"value": v, "pointer": &v, "struct": holder{v}, "slice": []Value{v}} {
			out := fmt.Sprintf(verb, arg)
			for _, f := range forms {
				if strings.Contains(out, f) {
					t.Errorf("%s of the %s printed the secret (in a form of length %d)", verb, what, len(f))
				}
			}
			if !strings.Contains(out, redacted) {
				t.Errorf("%s of the %s lacks the redaction marker (%d bytes printed)", verb, what, len(out))
			}
		}
	}
}
