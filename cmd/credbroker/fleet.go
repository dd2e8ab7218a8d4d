package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// printFleetSessions prints sessions of several hosts, with a HOST column
// (session list --all-hosts).
func printFleetSessions(w io.Writer, ss []broker.SessionInfo) {
	if len(ss) == 0 {
		fmt.Fprintln(w, "no sessions")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tID\tROLE\tSTATE\tUID\tEXPIRES\tLEASES")
	for _, s := range ss {
		host := s.Host
		if host == "" {
			host = "-"
		}
		exp := s.ExpiresAt.Local().Format(time.DateTime)
		if s.State == "active" {
			exp += " (in " + time.Until(s.ExpiresAt).Round(time.Second).String() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", host, s.ID, s.Role, s.State, strconv.Itoa(s.UID), exp, len(s.Leases))
	}
	tw.Flush()
}

// printFleetStatus is status --all-hosts: the fleet's live sessions per
// host, then every pending revocation.
func printFleetStatus(w io.Writer, st broker.Status) {
	perHost := map[string]int{}
	for _, s := range st.Sessions {
		perHost[s.Host]++
	}
	hosts := make([]string, 0, len(perHost))
	for h := range perHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	fmt.Fprintf(w, "this broker: host %s, providers %v\n\nsessions (%d live on %d hosts):", orDash(st.Host), st.Providers, len(st.Sessions), len(hosts))
	for _, h := range hosts {
		fmt.Fprintf(w, " %s=%d", orDash(h), perHost[h])
	}
	fmt.Fprintln(w)
	printFleetSessions(w, st.Sessions)
	printHosts(w, st)
	fmt.Fprintf(w, "\npending revocations: %d\n", len(st.Pending))
	printLeases(w, st.Pending)
}

// printHosts prints each broker sharing the store with its provider
// config fingerprints, and marks those whose config differs from this
// broker's.
func printHosts(w io.Writer, st broker.Status) {
	fmt.Fprintf(w, "\nhosts (%d registered; fingerprints of each provider's non-secret config):\n", len(st.Hosts))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tLAST SEEN\tFINGERPRINTS\tCONFIG")
	for _, h := range st.Hosts {
		names := slices.Sorted(maps.Keys(h.Fingerprints))
		fps := make([]string, len(names))
		for i, p := range names {
			fps[i] = p + "=" + h.Fingerprints[p]
		}
		mark := "same as this host's"
		switch {
		case h.This:
			mark = "this host"
		case len(h.Differs) > 0:
			mark = fmt.Sprintf("DIFFERS (%s): config differs from this host's: revoke --all here cannot reach its credentials",
				strings.Join(h.Differs, ", "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(h.Host), h.SeenAt.Local().Format(time.DateTime), orDash(strings.Join(fps, " ")), mark)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
