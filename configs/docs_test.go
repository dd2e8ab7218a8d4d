package configs

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestReferenceDocCoversSchema keeps docs/configuration.md in step with the
// types: every YAML field must be documented.
func TestReferenceDocCoversSchema(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, parent string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("docs/configuration.md does not document %s.%s", parent, name)
			}
			walk(f.Type, parent+"."+name)
		}
	}
	walk(reflect.TypeFor[Config](), "config")
}
