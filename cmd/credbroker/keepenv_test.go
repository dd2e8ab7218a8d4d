package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestKeepNames: `run` and `sandbox args` expand --keep-env prefixes against
// the host environment and leave out, with a warning that never shows the
// value, variables whose value is a URL with credentials or whose name is
// not a plain name: inside the sandbox the agent could read them from its
// init's environment even though the wrapper refuses them.
func TestKeepNames(t *testing.T) {
	environ := []string{
		"OTEL_ENDPOINT=http://collector:4318", "OTEL_HEADERS=x", "OTELX=not-a-prefix-match",
		"HTTPS_PROXY=http://alice:keepnames-pass@proxy:3128", "ANTHROPIC_API_KEY=sk-x",
		"npm_config_//registry.npmjs.org/:_authToken=keepnames-npm", "npm_config_cache=/tmp/npm",
	}
	tests := []struct {
		name    string
		entries []string
		want    []string
		warned  []string
		usage   bool
	}{
		{name: "names and prefixes", entries: []string{"ANTHROPIC_API_KEY", "OTEL_*", "UNSET_NAME", "OTEL_HEADERS"},
			want: []string{"ANTHROPIC_API_KEY", "OTEL_ENDPOINT", "OTEL_HEADERS", "UNSET_NAME"}},
		{name: "URL with credentials", entries: []string{"HTTPS_PROXY", "ANTHROPIC_API_KEY"},
			want: []string{"ANTHROPIC_API_KEY"}, warned: []string{`"HTTPS_PROXY"`}},
		{name: "prefix meets an odd name", entries: []string{"npm_config_*"},
			want: []string{"npm_config_cache"}, warned: []string{`"npm_config_//registry.npmjs.org/:_authToken"`}},
		{name: "star alone", entries: []string{"*"}, usage: true},
		{name: "odd name", entries: []string{"npm_config_//registry.npmjs.org/:_authToken"}, usage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warn bytes.Buffer
			got, err := keepNames(&warn, tt.entries, environ)
			if tt.usage {
				if exitCode(err) != exitUsage {
					t.Fatalf("got %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			for _, w := range tt.warned {
				if !strings.Contains(warn.String(), w) {
					t.Errorf("no warning about %s:\n%s", w, warn.String())
				}
			}
			if tt.warned == nil && warn.Len() > 0 {
				t.Errorf("unexpected warnings:\n%s", warn.String())
			}
			if strings.Contains(warn.String(), "keepnames-") {
				t.Errorf("a warning shows a value:\n%s", warn.String())
			}
		})
	}
}

// TestKeepEnvUsage: a --keep-env entry that is no name or NAME_PREFIX*, or
// --keep-env without a command to give it to, is a usage error, found
// before the daemon is asked for anything (the socket here does not exist).
func TestKeepEnvUsage(t *testing.T) {
	sock := "--socket=" + t.TempDir() + "/none.sock"
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"exec star", []string{"exec", "--keep-env", "*", "--", "true"}, `--keep-env "*"`},
		{"exec odd name", []string{"exec", "--keep-env", "npm_config_//r/:_authToken", "--", "true"}, "want a variable name"},
		{"session start without command", []string{"session", "start", "--role", "r", "--keep-env", "A"}, "applies to the command after --"},
		{"session start glob", []string{"session", "start", "--role", "r", "--keep-env", "*_TOKEN", "--", "true"}, `--keep-env "*_TOKEN"`},
		{"run star", []string{"run", "--role", "r", "--sandbox", "bwrap", "--keep-env", "*", "--", "true"}, `--keep-env "*"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{sock}, tt.args...), strings.NewReader(""), &out, &errOut)
			if code != exitUsage || !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut.String(), exitUsage, tt.want)
			}
		})
	}
}
