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
