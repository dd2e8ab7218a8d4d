package configs

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The decoder's messages, as go.yaml.in/yaml/v3 words them.
var (
	reLine       = regexp.MustCompile(`^line (\d+): (.*)$`)
	reUnknown    = regexp.MustCompile(`^field (.+) not found in type \S+$`)
	reDuplicate  = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	reWrongShape = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// locateDecodeErrors turns the decoder's error into FieldErrors that carry
// the field path, column and a fix, joined one a line.
func locateDecodeErrors(name string, idx nodeIndex, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(name, err)
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, decodeProblem(name, idx, msg))
	}
	return errors.Join(errs...)
}

// decodeProblem explains one decoder message.
func decodeProblem(name string, idx nodeIndex, msg string) *FieldError {
	fe := &FieldError{File: name, Msg: msg}
	m := reLine.FindStringSubmatch(msg)
	if m == nil {
		return fe
	}
	fe.Line, _ = strconv.Atoi(m[1]) // the regexp matched digits
	fe.Msg = m[2]

	var e nodeEntry
	var ok bool
	switch {
	case reUnknown.MatchString(fe.Msg):
		field := reUnknown.FindStringSubmatch(fe.Msg)[1]
		if e, ok = idx.keyAt(fe.Line, field); ok {
			fe.Msg = fmt.Sprintf("unknown field %q", field)
			fe.Hint = unknownFieldHint(e.path[:len(e.path)-1], field)
		}
	case reDuplicate.MatchString(fe.Msg):
		d := reDuplicate.FindStringSubmatch(fe.Msg)
		if e, ok = idx.keyAt(fe.Line, d[1]); ok {
			fe.Msg = fmt.Sprintf("%q is set twice (first at line %s)", d[1], d[2])
			fe.Hint = "remove one of them"
		}
	case reWrongShape.MatchString(fe.Msg):
		w := reWrongShape.FindStringSubmatch(fe.Msg)
		hasTag := func(e nodeEntry) bool { return e.val.ShortTag() == w[1] }
		if e, ok = idx.valueAt(fe.Line, hasTag); ok {
			fe.Msg = fmt.Sprintf("expected %s, got %s", shapeOf(typeAt(e.path)), gotShape(e.val))
			fe.Hint = shapeHint(typeAt(e.path))
		}
	default:
		// Messages from our own unmarshaler (Duration) end with their hint.
		if i := strings.LastIndex(fe.Msg, "; "); i >= 0 {
			fe.Msg, fe.Hint = fe.Msg[:i], fe.Msg[i+2:]
		}
		isDuration := func(e nodeEntry) bool { return typeAt(e.path) == reflect.TypeFor[Duration]() }
		if e, ok = idx.valueAt(fe.Line, isDuration); !ok {
			e, ok = idx.valueAt(fe.Line, func(nodeEntry) bool { return true })
		}
	}
	if ok {
		fe.Path = e.path.String()
		fe.path = e.path
		fe.Line, fe.Column = e.pos()
	}
	return fe
}

// unknownFieldHint suggests the field the user probably meant, or lists
// the fields allowed where the unknown one is.
func unknownFieldHint(parent fieldPath, field string) string {
	names := fieldNames(typeAt(parent))
	if len(names) == 0 {
		return "remove it"
	}
	if best := closest(field, names); best != "" {
		return fmt.Sprintf("did you mean %q? (allowed here: %s)", best, strings.Join(names, ", "))
	}
	return "remove it or use one of: " + strings.Join(names, ", ")
}

// closest returns the name within edit distance 2 of s (ignoring case and
// - versus _), or "".
func closest(s string, names []string) string {
	norm := func(x string) string { return strings.ReplaceAll(strings.ToLower(x), "-", "_") }
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(norm(s), norm(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
