package agentenv

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/internal/secret"
)

func TestRenderEnvGolden(t *testing.T) {
	env := map[string]secret.Value{
		"VAULT_ADDR":      secret.New("http://127.0.0.1:8200"),
		"AWS_CONFIG_FILE": secret.New(SessionDirRef + "/aws/config"),
		"EMPTY":           secret.New(""),
		"QUOTED":          secret.New(`it's "quoted"`),
		"MULTI":           secret.New("line one\nline two\n"),
		"SPACES":          secret.New("a b  c"),
		"EQUALS":          secret.New("a=b==c"),
	}
	golden(t, "env.golden", RenderEnv(env))
}

var roundTripValues = map[string]string{
	"PLAIN":     "abc123",
	"EMPTY":     "",
	"SPACE":     "with space",
	"LEAD":      "  leading and trailing  ",
	"NEWLINE":   "line1\nline2",
	"TRAILNL":   "ends with newline\n",
	"ONLYNL":    "\n\n",
	"SQUOTE":    "it's",
	"SQUOTES":   "''''",
	"DQUOTE":    `say "hi"`,
	"EQUALS":    "k=v=w",
	"BACKSLASH": `C:\path\n\t`,
	"DOLLAR":    "$HOME ${PATH} $(id) `id`",
	"GLOB":      "*?[a]",
	"TILDE":     "~/x:~",
	"HASH":      "#not a comment",
	"TAB":       "a\tb",
	"UNICODE":   "päßwörd-日本",
	"CR":        "a\r\nb",
	"SECRET":    marker + "'\n\"=",
	"DIRREF":    SessionDirRef + "/kube/config",
}

func TestEnvRoundTrip(t *testing.T) {
	in := map[string]secret.Value{}
	for k, v := range roundTripValues {
		in[k] = secret.New(v)
	}
	rendered := RenderEnv(in)
	got, err := ParseEnv(rendered)
	if err != nil {
		t.Fatalf("ParseEnv(RenderEnv(...)): %v", err)
	}
	if len(got) != len(roundTripValues) {
		t.Errorf("got %d variables, want %d", len(got), len(roundTripValues))
	}
	for k, want := range roundTripValues {
		if got[k] != want {
			t.Errorf("%s: got %q, want %q", k, got[k], want)
		}
	}
	if string(RenderEnv(in)) != string(rendered) {
		t.Error("RenderEnv is not deterministic")
	}
}

// TestEnvFileIsShell checks that sh reads the file to the same values, so
// people and scripts can source it.
func TestEnvFileIsShell(t *testing.T) {
	in := map[string]secret.Value{}
	var names []string
	for k, v := range roundTripValues {
		in[k] = secret.New(v)
		names = append(names, k)
	}
	p := filepath.Join(shmDir(t), "env")
	if err := os.WriteFile(p, RenderEnv(in), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `. "$1"; shift; for n in "$@"; do eval "printf '%s\0' \"\$$n\""; done`
	out, err := exec.Command("/bin/sh", append([]string{"-c", script, "sh", p}, names...)...).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	vals := strings.Split(string(out), "\x00")
	for i, n := range names {
		if vals[i] != roundTripValues[n] {
			t.Errorf("sh reads %s as %q, want %q", n, vals[i], roundTripValues[n])
		}
	}
}

func TestParseEnvAccepts(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"empty file", "", map[string]string{}},
		{"comments and blanks", "# c\n\n#x=1\nA=1\n\n", map[string]string{"A": "1"}},
		{"no final newline", "A=1", map[string]string{"A": "1"}},
		{"concatenation", `A=x'y z'\'w`, map[string]string{"A": "xy z'w"}},
		{"multi-line then next", "A='1\n2'\nB=3\n", map[string]string{"A": "1\n2", "B": "3"}},
		{"empty value", "A=\nB=''\n", map[string]string{"A": "", "B": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnv([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseEnvRejects(t *testing.T) {
	s := marker
	tests := []struct{ name, in, want string }{
		{"no equals", "# h\nA=1\n" + s + "\n", "env line 3: want NAME=VALUE"},
		{"newline before equals", "A\n=1\n", "env line 1: want NAME=VALUE"},
		{"bad name", "1A=" + s + "\n", "env line 1: invalid variable name"},
		{"secret as name", s + "-x=1\n", "env line 1: invalid variable name"},
		{"leading space", " A=1\n", "env line 1: invalid variable name"},
		{"line of spaces", "A=1\n  \n", "env line 2: want NAME=VALUE"},
		{"CRLF", "A=1\r\n", "env line 1: value of A: character 0x0d must be quoted"},
		{"export prefix", "export A=1\n", "env line 1: invalid variable name"},
		{"duplicate", "A=1\nB=2\nA=3\n", "env line 3: A is set twice"},
		{"unquoted space", "A=1\nB=" + s + " x\n", "env line 2: value of B: character space must be quoted"},
		{"double quotes", `A="` + s + `"`, "env line 1: value of A: character double quote must be quoted"},
		{"dollar", "A=$" + s, "env line 1: value of A: character $ must be quoted"},
		{"unterminated", "A=1\nB='x\ny\nC=" + s + "\n", "env line 2: value of B: unterminated single quote"},
		{"line after multi-line", "A='x\ny'\nB=ok\nC=" + s + " \n", "env line 4: value of C: character space must be quoted"},
		{"bad escape", `A=\n` + s, `env line 1: value of A: only \' may be escaped`},
		{"trailing backslash", `A=x\`, `env line 1: value of A: only \' may be escaped`},
		{"NUL quoted", "A='a\x00b'", "env line 1: value of A: contains a NUL byte"},
		{"NUL bare", "A=a\x00b", "env line 1: value of A: character 0x00 must be quoted"},
		{"control char", "A=a\x01", "env line 1: value of A: character 0x01 must be quoted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnv([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseEnv accepted %q", tt.in)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			noSecret(t, err)
		})
	}
}

func TestRenderEnvPanicsOnBadName(t *testing.T) {
	for _, k := range []string{"A\nB", "A=B", "", "1A"} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("RenderEnv accepted name %q", k)
				}
			}()
			RenderEnv(map[string]secret.Value{k: secret.New("v")})
		}()
	}
}
