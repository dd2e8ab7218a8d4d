package configs

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any bytes give either a valid config or errors that each name
// the file and say what is wrong; never a panic or a hang.
func FuzzParse(f *testing.F) {
	f.Add(Example())
	f.Add([]byte(vaultProv + roleR))
	f.Add([]byte("roles:\n  r: [\n"))
	f.Add([]byte("broker:\n  allowed_uids: [me]\n"))
	f.Add([]byte("providers:\n  vault:\n    address: http://x\n    auth: {token_env: A, token_file: /t}\n"))
	f.Add([]byte("roles:\n  r:\n    aws:\n      role_arn: arn:x\n      policy: '{\"Statement\":[]}'\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
		t.Setenv("XDG_STATE_HOME", "/var/lib/test-state")
		t.Setenv("HOME", "/home/test")
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil {
			if cfg == nil || len(cfg.Roles) == 0 {
				t.Fatal("Parse accepted a config without roles")
			}
			return
		}
		var errs []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		} else {
			errs = []error{err}
		}
		for _, e := range errs {
			msg := e.Error()
			if !strings.HasPrefix(msg, "fuzz.yaml") || len(msg) < len("fuzz.yaml: x") {
				t.Fatalf("error does not name the file or says nothing: %q", msg)
			}
			var fe *FieldError
			if errors.As(e, &fe) && fe.Msg == "" {
				t.Fatalf("field error without a message: %q", msg)
			}
		}
	})
}
