package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/agentenv/forward"
)

type egressForwardOpts struct {
	socket, http, socks string
}

// newEgressForwardCmd is the forwarder child `credbroker exec` starts
// inside a sandbox whose session has egress (see agentenv/forward). Hidden:
// it is started by exec, never by hand.
func newEgressForwardCmd(g *globalOpts) *cobra.Command {
	o := &egressForwardOpts{}
	cmd := &cobra.Command{
		Use:    "egress-forward --socket PATH",
		Short:  "Relay the sandbox's proxy ports to the egress gateway socket (started by exec)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.socket == "" {
				return usagef("--socket is required")
			}
			ready := os.NewFile(forward.ReadyFD, "ready")
			if ready == nil {
				return usagef("egress-forward reports on fd %d; it is started by credbroker exec", forward.ReadyFD)
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			return forward.RunChild(cmd.Context(), forward.Config{Socket: o.socket, HTTPAddr: o.http, SOCKSAddr: o.socks, Logger: log}, ready)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.socket, "socket", "", "the egress gateway's Unix socket")
	f.StringVar(&o.http, "http", forward.DefaultHTTPAddr, "HTTP/CONNECT proxy listen address (a free port when taken)")
	f.StringVar(&o.socks, "socks", forward.DefaultSOCKSAddr, "SOCKS5 listen address (a free port when taken)")
	return cmd
}
