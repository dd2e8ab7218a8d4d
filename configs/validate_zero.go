package configs

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// explicitZeros reports every duration written as zero ("0s", "0"). Every
// duration field takes its default when it is zero, so a written zero
// would silently become the default (ttl: 0s a 15-minute session); it is
// refused instead. It runs on the file's nodes, as after decoding a written
// zero and a left-out field look the same; cfg has its defaults applied,
// so the hint can name the default.
func explicitZeros(idx nodeIndex, cfg *Config) problems {
	var ps problems
	for _, e := range idx {
		if e.val.Kind != yaml.ScalarNode || typeAt(e.path) != reflect.TypeFor[Duration]() {
			continue
		}
		if d, err := time.ParseDuration(e.val.Value); err != nil || d != 0 {
			continue
		}
		hint := "write a positive duration such as 15m"
		if def, ok := durationAt(cfg, e.path); ok && def > 0 {
			hint = fmt.Sprintf("write a positive duration, or remove the line to get the default (%s here)", def)
		}
		ps.add(e.path, hint, "%s is not positive (a zero would silently mean the default)", e.val.Value)
	}
	return ps
}

// durationAt reads the Duration at path in cfg.
func durationAt(cfg *Config, path fieldPath) (Duration, bool) {
	v := reflect.ValueOf(cfg).Elem()
	for _, seg := range path {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return 0, false
			}
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Struct:
			f, ok := fieldByTag(v.Type(), seg)
			if !ok {
				return 0, false
			}
			v = v.FieldByIndex(f.Index)
		case reflect.Map:
			if v.Type().Key().Kind() != reflect.String {
				return 0, false
			}
			v = v.MapIndex(reflect.ValueOf(seg).Convert(v.Type().Key()))
		case reflect.Slice:
			i, err := strconv.Atoi(strings.Trim(seg, "[]"))
			if err != nil || i < 0 || i >= v.Len() {
				return 0, false
			}
			v = v.Index(i)
		default:
			return 0, false
		}
		if !v.IsValid() {
			return 0, false
		}
	}
	d, ok := v.Interface().(Duration)
	return d, ok
}
