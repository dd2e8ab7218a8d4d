package egress

import "net/netip"

// specialBlocks are destinations refused unless a rule names them or they
// are a provider endpoint: loopback, private (RFC 1918), link-local (cloud
// metadata at 169.254.169.254), CGNAT, IPv6 ULA (AWS's IPv6 metadata
// fd00:ec2::254), NAT64 (which can embed any of those), unspecified,
// multicast and reserved addresses.
var specialBlocks = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (cloud metadata lives here)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("::/128"), "an unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
	{netip.MustParsePrefix("fc00::/7"), "a unique local address (cloud metadata lives here)"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a NAT64 address"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "an IPv4-mapped address"},
}

// special returns the block a refused-by-default address is in.
func special(a netip.Addr) (netip.Prefix, string, bool) {
	for _, b := range specialBlocks {
		if b.prefix.Contains(a) {
			return b.prefix, b.what, true
		}
	}
	return netip.Prefix{}, "", false
}

// names reports whether rule prefix p names address a of block b: it holds
// a and is no wider than b, so 10.0.0.0/8 names 10.1.2.3 but 0.0.0.0/0
// (every public address) does not.
func names(p, b netip.Prefix, a netip.Addr) bool {
	return p.Contains(a) && p.Bits() >= b.Bits()
}
