package configs

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

// nodeEntry is one field or list item of the YAML document: its path, the
// key node naming it (nil for list items and the root) and its value.
type nodeEntry struct {
	path fieldPath
	key  *yaml.Node
	val  *yaml.Node
}

// pos is where an error about the entry points: the key for a mapping entry
// (where the field starts), else the value.
func (e nodeEntry) pos() (line, col int) {
	if e.key != nil {
		return e.key.Line, e.key.Column
	}
	return e.val.Line, e.val.Column
}

// nodeIndex lists every field of a parsed document in document order, so
// errors found after decoding can be traced back to a line.
type nodeIndex []nodeEntry

// indexNodes walks doc (a DocumentNode or its root) and indexes every node.
// Aliases are not followed: an error in aliased content points at the alias.
func indexNodes(doc *yaml.Node) nodeIndex {
	if doc == nil {
		return nil
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		doc = doc.Content[0]
	}
	var idx nodeIndex
	var walk func(path fieldPath, key, val *yaml.Node)
	walk = func(path fieldPath, key, val *yaml.Node) {
		idx = append(idx, nodeEntry{path: path, key: key, val: val})
		switch val.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(val.Content); i += 2 {
				k, v := val.Content[i], val.Content[i+1]
				walk(path.with(k.Value), k, v)
			}
		case yaml.SequenceNode:
			for i, v := range val.Content {
				walk(path.index(i), nil, v)
			}
		}
	}
	walk(fieldPath{}, nil, doc)
	return idx
}

// lookup returns the entry for path or, when the field is absent (it was
// defaulted or left out), for its nearest ancestor that is present.
func (idx nodeIndex) lookup(path fieldPath) (nodeEntry, bool) {
	for n := len(path); n >= 0; n-- {
		for _, e := range idx {
			if slices.Equal(e.path, path[:n]) {
				return e, true
			}
		}
	}
	return nodeEntry{}, false
}

// keyAt returns the entry whose key is name on line.
func (idx nodeIndex) keyAt(line int, name string) (nodeEntry, bool) {
	for _, e := range idx {
		if e.key != nil && e.key.Line == line && e.key.Value == name {
			return e, true
		}
	}
	return nodeEntry{}, false
}

// valueAt returns the deepest entry whose value starts on line and which
// match accepts; the deepest is the most specific field.
func (idx nodeIndex) valueAt(line int, match func(nodeEntry) bool) (nodeEntry, bool) {
	var best nodeEntry
	found := false
	for _, e := range idx {
		if e.val.Line != line || !match(e) {
			continue
		}
		if !found || len(e.path) > len(best.path) {
			best, found = e, true
		}
	}
	return best, found
}
