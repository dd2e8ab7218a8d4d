package configs

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// typeAt returns the Go type the field at path decodes into, or nil when
// the path leaves the schema.
func typeAt(path fieldPath) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, seg := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByTag(t, seg)
			if !ok {
				return nil
			}
			t = f.Type
		case reflect.Map, reflect.Slice:
			t = t.Elem()
		default:
			return nil
		}
	}
	return t
}

// fieldByTag finds the struct field whose yaml name is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlName is the key a struct field is written under, "" when it is not
// part of the YAML.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// fieldNames lists the yaml keys a struct type accepts.
func fieldNames(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		if n := yamlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// shapeOf names what a Go type expects in YAML.
func shapeOf(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nil:
		return "a different value"
	case t == reflect.TypeFor[Duration]():
		return "a duration"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list of " + plural(shapeOf(t.Elem()))
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.String:
		return "a string"
	default:
		return "a value"
	}
}

// plural turns "a string" into "strings", for "a list of strings".
func plural(shape string) string { return strings.TrimPrefix(shape, "a ") + "s" }

// gotShape describes what the YAML held.
func gotShape(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q", n.Value)
	}
	return kindName(n)
}

// shapeHint shows how to write a value of type t.
func shapeHint(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nil:
		return "see docs/configuration.md"
	case t == reflect.TypeFor[Duration]():
		return durationHint
	}
	switch t.Kind() {
	case reflect.Struct:
		return "write a mapping of: " + strings.Join(fieldNames(t), ", ")
	case reflect.Map:
		return "write a mapping of key: value lines"
	case reflect.Slice:
		return "write a list, one \"- item\" a line or [a, b]"
	case reflect.Int, reflect.Int64:
		return "write a number without quotes"
	default:
		return "see docs/configuration.md"
	}
}
