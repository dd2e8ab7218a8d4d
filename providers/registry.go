package providers

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// Registry holds the configured providers by name. Providers are registered
// explicitly at start-up (no init-time magic).
type Registry struct{ m map[string]Provider }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Provider{}} }

// Register adds p; registering a name twice is a programming error.
func (r *Registry) Register(p Provider) {
	if _, dup := r.m[p.Name()]; dup {
		panic(fmt.Sprintf("providers: %s registered twice", p.Name()))
	}
	r.m[p.Name()] = p
}

// Get returns the provider called name.
func (r *Registry) Get(name string) (Provider, bool) {
	p, ok := r.m[name]
	return p, ok
}

// Close closes every provider that holds resources (io.Closer).
func (r *Registry) Close() error {
	var errs []error
	for _, p := range r.m {
		if c, ok := p.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	ns := make([]string, 0, len(r.m))
	for n := range r.m {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}
