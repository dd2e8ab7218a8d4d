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
