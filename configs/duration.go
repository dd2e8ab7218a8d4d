package configs

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// durationHint tells a user how to write a Duration.
const durationHint = "write a number with a unit, such as 90s, 15m or 1h30m"

// UnmarshalYAML parses a Go duration string such as "20m" or "1h30m". A bad
// value is reported as a *yaml.TypeError so the decoder keeps going and
// reports every bad field at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: expected a duration, got %s; %s", n.Line, kindName(n), durationHint),
		}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: %q is not a duration; %s", n.Line, n.Value, durationHint),
		}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in the short form String returns, so a
// marshalled config loads back unchanged.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String is time.Duration's form without zero trailing units: "1h", not
// "1h0m0s"; "1h30m", not "1h30m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// kindName names a node's kind for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}
