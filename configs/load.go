package configs

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the config file at path, decodes it strictly (an unknown field
// is an error), applies defaults and validates it. Every error names the
// file, line, field and fix; all problems are returned together, joined with
// errors.Join, one a line; apart from a failure to read the file, each is a
// *FieldError.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for a config already in memory; name is used in errors as
// the file name.
func Parse(name string, data []byte) (*Config, error) {
	doc, err := parseNode(name, data)
	if err != nil {
		return nil, err
	}
	idx := indexNodes(doc)
	cfg := &Config{Path: name}
	if err := decodeStrict(data, cfg); err != nil {
		return nil, locateDecodeErrors(name, idx, err)
	}
	cfg.ApplyDefaults()
	if ps := append(explicitZeros(idx, cfg), cfg.problems()...); len(ps) > 0 {
		return nil, locate(name, idx, ps)
	}
	return cfg, nil
}

// parseNode parses data into a node tree, kept to find the line of any
// error found after decoding. An empty file or one holding more than one
// YAML document is refused.
func parseNode(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, &FieldError{File: name, Msg: "the file is empty",
			Hint: "start from the example: credbroker config example"}
	case err != nil:
		return nil, syntaxError(name, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return &doc, nil
	case err != nil:
		return nil, syntaxError(name, err)
	default:
		return nil, &FieldError{File: name, Line: extra.Line, Column: extra.Column,
			Msg: "a second YAML document starts here", Hint: "keep the whole config in one document (remove the ---)"}
	}
}

// syntaxError turns a YAML parser error ("yaml: line 3: ...") into a
// FieldError carrying the line.
func syntaxError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{File: name, Msg: msg, Hint: "fix the YAML syntax"}
	if n, _ := fmt.Sscanf(msg, "line %d:", &fe.Line); n == 1 {
		_, fe.Msg, _ = strings.Cut(msg, ": ")
		// For "did not find expected ..." (an unclosed flow collection)
		// the YAML library reports the 0-based line of the collection's
		// start; make it the 1-based line like every other error.
		if strings.HasPrefix(fe.Msg, "did not find expected") {
			fe.Line++
		}
	}
	return fe
}

// decodeStrict decodes data into cfg, refusing fields the schema lacks.
func decodeStrict(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(cfg)
}

// locate sets each problem's file and position from the YAML tree and joins
// them in file order.
func locate(name string, idx nodeIndex, ps problems) error {
	for _, p := range ps {
		p.File = name
		if e, ok := idx.lookup(p.path); ok {
			p.Line, p.Column = e.pos()
		}
	}
	slices.SortStableFunc(ps, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}
