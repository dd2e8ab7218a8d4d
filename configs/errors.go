package configs

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a config: where it is, what is wrong and how
// to fix it. Load returns them joined with errors.Join, so callers can list
// them with errors.As or print the joined error, one problem a line.
type FieldError struct {
	// File is the config file; empty when the config did not come from one.
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Path is the field, e.g. "roles.agent-readonly.max_ttl"; empty for
	// problems with the file as a whole (syntax errors).
	Path string
	// Msg says what is wrong.
	Msg string
	// Hint says how to fix it.
	Hint string

	// path is Path as segments, for finding the field's line.
	path fieldPath
}

// Error formats the problem as "file:line:col: path: msg; hint", leaving out
// the parts that are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// fieldPath is a field's location as segments: struct fields and map keys
// as names, list items as "[i]". Keeping segments (not a dotted string) lets
// a role name that itself contains a dot still be found in the YAML.
type fieldPath []string

// String renders "roles.agent-dev.vault.secrets[1].path".
func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// with returns p extended by segs, never sharing p's backing array.
func (p fieldPath) with(segs ...string) fieldPath {
	out := make(fieldPath, 0, len(p)+len(segs))
	return append(append(out, p...), segs...)
}

// index returns p extended by the list item i.
func (p fieldPath) index(i int) fieldPath { return p.with(fmt.Sprintf("[%d]", i)) }

// problems collects FieldErrors during validation.
type problems []*FieldError

// add records a problem at path.
func (ps *problems) add(path fieldPath, hint, format string, args ...any) {
	*ps = append(*ps, &FieldError{Path: path.String(), Msg: fmt.Sprintf(format, args...), Hint: hint, path: path})
}
