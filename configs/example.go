package configs

import (
	"embed"
	"io/fs"
)

// examples holds the example configs shipped with the binary.
//
//go:embed examples/*.yaml
var examples embed.FS

// Example returns the annotated example config (examples/config.yaml), which
// `credbroker config example` prints as a starting point.
func Example() []byte {
	b, err := examples.ReadFile("examples/config.yaml")
	if err != nil {
		panic("configs: example missing from the build: " + err.Error())
	}
	return b
}

// Examples returns every example config, by file name.
func Examples() fs.FS {
	sub, err := fs.Sub(examples, "examples")
	if err != nil {
		panic("configs: examples missing from the build: " + err.Error())
	}
	return sub
}
