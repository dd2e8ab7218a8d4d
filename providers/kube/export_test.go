package kube

import "time"

// SetNow replaces the provider's clock (tests of the Role check cache).
func SetNow(p *Provider, now func() time.Time) { p.now = now }
