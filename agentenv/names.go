package agentenv

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Names of the fixed files in a session dir.
const (
	MetaFile = "session.json"
	EnvFile  = "env"
)

// tmpPrefix marks names under construction; List skips them and CleanTemp
// removes them.
const tmpPrefix = ".tmp-"

// ErrInvalidID is returned (wrapped) for a session id that is not
// 1-64 of [A-Za-z0-9-].
var ErrInvalidID = errors.New("invalid session id")

var (
	idRE   = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	compRE = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,200}$`)
	keyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidID reports whether id may name a session dir. Ids become path
// components, so anything that could escape Root is refused.
func ValidID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("agentenv: %w %q: want 1-64 characters of [A-Za-z0-9-]", ErrInvalidID, id)
	}
	return nil
}

// validRel checks a slash-separated relative file path from a Grant.
func validRel(rel string) error {
	bad := func(why string) error { return fmt.Errorf("agentenv: file path %q: %s", rel, why) }
	if rel == "" || len(rel) > 1024 {
		return bad("empty or longer than 1024 bytes")
	}
	if strings.HasPrefix(rel, "/") {
		return bad("must be relative")
	}
	if rel == MetaFile || rel == EnvFile {
		return bad("reserved for the broker")
	}
	for _, c := range strings.Split(rel, "/") {
		switch {
		case c == "":
			return bad("empty path component")
		case c == "." || c == "..":
			return bad(`"." and ".." are not allowed`)
		case strings.HasPrefix(c, tmpPrefix):
			return bad(tmpPrefix + " names are reserved for temporary files")
		case !compRE.MatchString(c):
			return bad("components must be 1-200 characters of [A-Za-z0-9._@+-]")
		}
	}
	return nil
}

// checkFiles validates every path and refuses a file that would also have
// to be a directory ("a" and "a/b").
func checkFiles(paths []string) error {
	paths = slices.Sorted(slices.Values(paths))
	for i, p := range paths {
		if err := validRel(p); err != nil {
			return err
		}
		if i+1 < len(paths) && strings.HasPrefix(paths[i+1], p+"/") {
			return fmt.Errorf("agentenv: file path %q is also a directory of %q", p, paths[i+1])
		}
	}
	return nil
}

// reservedEnvPrefix is kept for variables the broker and wrapper set.
const reservedEnvPrefix = "CREDBROKER_"

// checkEnv validates provider env names and values; values are never
// printed.
func checkEnv(env map[string]string) error {
	for k, v := range env {
		if !keyRE.MatchString(k) {
			return fmt.Errorf("agentenv: env name %q: want [A-Za-z_][A-Za-z0-9_]*", k)
		}
		if strings.HasPrefix(k, reservedEnvPrefix) {
			return fmt.Errorf("agentenv: env name %s: the %s prefix is reserved for the broker", k, reservedEnvPrefix)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("agentenv: env %s: value contains a NUL byte", k)
		}
	}
	return nil
}

// splitPath splits a slash-separated relative path into components.
func splitPath(rel string) []string { return strings.Split(rel, "/") }
