package agentenv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
)

// Variables the broker writes into every env file.
const (
	EnvSessionID = "CREDBROKER_SESSION_ID"
	EnvRole      = "CREDBROKER_ROLE"
	EnvExpiresAt = "CREDBROKER_EXPIRES_AT"
	// EnvSessionDir is set by the wrapper, not the file: only the wrapper
	// knows where the dir is mounted.
	EnvSessionDir = "CREDBROKER_SESSION_DIR"
)

// SessionDirRef is, at the start of an env value, a stand-in for the session dir
// as the wrapper sees it; BuildEnv replaces it. Providers write for example
// AWS_CONFIG_FILE=${CREDBROKER_SESSION_DIR}/aws/config.
const SessionDirRef = "${" + EnvSessionDir + "}"

const envHeader = "# credbroker session env: generated, do not edit.\n" +
	"# Values are POSIX shell words (single-quoted where needed).\n"

// RenderEnv renders env as KEY=VALUE lines sorted by key. A value made only
// of characters that are safe unquoted in sh is written bare; any other is
// single-quoted, a quote inside becoming quote, backslash, quote, quote
// (the usual sh idiom), so the file is valid sh and ParseEnv reads back
// exactly the same bytes, newlines included.
//
// Every key must match [A-Za-z_][A-Za-z0-9_]* and no value may contain NUL;
// Writer checks this first. RenderEnv panics otherwise, because a bad key
// could inject a line.
func RenderEnv(env map[string]secret.Value) []byte {
	var b bytes.Buffer
	b.WriteString(envHeader)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k].Reveal()
		if !keyRE.MatchString(k) || strings.IndexByte(v, 0) >= 0 {
			panic(fmt.Sprintf("agentenv: RenderEnv: invalid env name %q or NUL in its value", k))
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(shellQuote(v))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// safeBare is the set of bytes that need no quoting in sh, even in an
// assignment (no ~, which sh expands after = and :).
func safeBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("_@%+=:,./-", c) >= 0
}

func shellQuote(v string) string {
	if v == "" {
		return "''"
	}
	bare := true
	for i := 0; i < len(v) && bare; i++ {
		bare = safeBare(v[i])
	}
	if bare {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// ParseEnv parses an env file strictly: blank lines and lines starting
// with # are skipped; every other line is NAME=WORD where WORD is a
// concatenation of bare safe characters, '...' (which may span lines) and
// \'. Anything else is an error naming the line. Errors never quote values.
func ParseEnv(b []byte) (map[string]string, error) {
	env := map[string]string{}
	line := 1
	for i := 0; i < len(b); {
		switch b[i] {
		case '\n':
			line++
			i++
			continue
		case '#':
			for i < len(b) && b[i] != '\n' {
				i++
			}
			continue
		}
		start := line
		eq := bytes.IndexByte(b[i:], '=')
		nl := bytes.IndexByte(b[i:], '\n')
		if eq < 0 || (nl >= 0 && nl < eq) {
			return nil, fmt.Errorf("agentenv: env line %d: want NAME=VALUE", start)
		}
		key := string(b[i : i+eq])
		if !keyRE.MatchString(key) {
			return nil, fmt.Errorf("agentenv: env line %d: invalid variable name: want [A-Za-z_][A-Za-z0-9_]*", start)
		}
		if _, dup := env[key]; dup {
			return nil, fmt.Errorf("agentenv: env line %d: %s is set twice", start, key)
		}
		val, n, lines, err := parseWord(b[i+eq+1:])
		if err != nil {
			return nil, fmt.Errorf("agentenv: env line %d: value of %s: %w", start, key, err)
		}
		env[key] = val
		i += eq + 1 + n
		line += lines
	}
	return env, nil
}

// parseWord reads one value up to and including the end of its line. It
// returns the value, the bytes consumed and the newlines consumed.
func parseWord(b []byte) (string, int, int, error) {
	var v strings.Builder
	lines := 0
	i := 0
	for i < len(b) {
		c := b[i]
		switch {
		case c == '\n':
			return v.String(), i + 1, lines + 1, nil
		case c == '\'':
			end := bytes.IndexByte(b[i+1:], '\'')
			if end < 0 {
				return "", 0, 0, fmt.Errorf("unterminated single quote")
			}
			q := b[i+1 : i+1+end]
			if bytes.IndexByte(q, 0) >= 0 {
				return "", 0, 0, fmt.Errorf("contains a NUL byte")
			}
			lines += bytes.Count(q, []byte{'\n'})
			v.Write(q)
			i += end + 2
		case c == '\\':
			if i+1 >= len(b) || b[i+1] != '\'' {
				return "", 0, 0, fmt.Errorf(`only \' may be escaped outside quotes`)
			}
			v.WriteByte('\'')
			i += 2
		case safeBare(c):
			v.WriteByte(c)
			i++
		default:
			return "", 0, 0, fmt.Errorf("character %s must be quoted", describeByte(c))
		}
	}
	return v.String(), i, lines, nil
}

// describeByte names a byte without echoing printable characters, which
// could be part of a secret.
func describeByte(c byte) string {
	switch c {
	case ' ':
		return "space"
	case '\t':
		return "tab"
	case '"':
		return "double quote"
	case '$':
		return "$"
	case '`':
		return "backquote"
	}
	return fmt.Sprintf("0x%02x", c)
}

// sessionEnv merges a provider env with the variables the broker sets.
func sessionEnv(m Meta, env map[string]secret.Value) map[string]secret.Value {
	out := make(map[string]secret.Value, len(env)+3)
	maps.Copy(out, env)
	out[EnvSessionID] = secret.New(m.ID)
	out[EnvRole] = secret.New(m.Role)
	out[EnvExpiresAt] = secret.New(m.ExpiresAt.UTC().Format(time.RFC3339))
	return out
}

// revealEnv unwraps env for validation.
func revealEnv(env map[string]secret.Value) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v.Reveal()
	}
	return out
}
