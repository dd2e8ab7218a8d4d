package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/guard"
	"github.com/credbroker/credbroker/configs"
)

// errLeak marks a scan that found issued credentials.
var errLeak = errors.New("issued credentials found")

type guardOpts struct {
	stateDir string
	staged   bool
	diff     string
	noRevoke bool
	force    bool
	output   string
}

func newGuardCmd(g *globalOpts) *cobra.Command {
	o := &guardOpts{}
	cmd := &cobra.Command{
		Use:   "guard",
		Short: "Find credentials the broker issued where they should not be",
		Long: `The broker keeps an HMAC-SHA256 fingerprint (keyed with a broker-local key) of
every secret it issued, for as long as it could be valid, never the secret.
'guard scan' fingerprints candidate strings and reports exact matches only,
so it has no false positives. It finds a secret written as is, split across
lines or JSON string pieces, base64-encoded (standard or URL alphabet, also
wrapped) and URL-encoded. A hit names file, line, session and provider and,
unless --no-revoke, revokes that session at once through the daemon, which
writes an audit record.`,
	}
	cmd.PersistentFlags().StringVar(&o.stateDir, "state-dir", "", "the broker's state dir (default: the config's broker.state_dir)")
	scan := &cobra.Command{
		Use:   "scan [PATH ...] [--staged] [--diff REV]",
		Short: "Scan files, the staged changes or a git diff",
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.staged && o.diff != "" {
				return usagef("give --staged or --diff, not both")
			}
			if (o.staged || o.diff != "") && len(args) > 0 {
				return usagef("paths and --staged/--diff do not mix")
			}
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if !o.staged && o.diff == "" && len(args) == 0 {
				args = []string{"."}
			}
			return runGuardScan(cmd.Context(), g, o, args)
		},
	}
	scan.Flags().BoolVar(&o.staged, "staged", false, "scan the lines a commit would add (git diff --cached)")
	scan.Flags().StringVar(&o.diff, "diff", "", "scan the lines added since REV (git diff REV)")
	scan.Flags().BoolVar(&o.noRevoke, "no-revoke", false, "report only; do not revoke the sessions found")
	scan.Flags().StringVarP(&o.output, "output", "o", "text", `output format: text or json ({"fingerprints", "findings": [{"file", "line", "what", "session", "provider", "encoding", "revoked"}]}; never a secret)`)
	hook := &cobra.Command{
		Use:   "install-hook",
		Short: "Install a git pre-commit hook that blocks commits containing issued credentials",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runInstallHook(g, o) },
	}
	hook.Flags().BoolVar(&o.force, "force", false, "replace an existing pre-commit hook")
	cmd.AddCommand(scan, hook)
	return cmd
}

func (o *guardOpts) dir(g *globalOpts) (string, error) {
	if o.stateDir != "" {
		return o.stateDir, nil
	}
	p, err := configs.Find(g.config)
	if err != nil {
		return "", fmt.Errorf("%w (or give --state-dir)", err)
	}
	cfg, err := configs.Load(p)
	if err != nil {
		return "", err
	}
	return cfg.Broker.StateDir, nil
}

func runGuardScan(ctx context.Context, g *globalOpts, o *guardOpts, paths []string) error {
	dir, err := o.dir(g)
	if err != nil {
		return err
	}
	gd, err := guard.OpenReadOnly(dir)
	if err != nil {
		return err
	}
	var hits []guard.Hit
	if o.staged || o.diff != "" {
		args := []string{"diff", "--no-color", "--no-ext-diff", "-U0"}
		if o.staged {
			args = append(args, "--cached")
		} else {
			args = append(args, o.diff)
		}
		out, err := exec.CommandContext(ctx, "git", args...).Output()
		if err != nil {
			return fmt.Errorf("git %v: %w", args, err)
		}
		files, err := guard.ParseDiff(bytes.NewReader(out))
		if err != nil {
			return err
		}
		names := make([]string, 0, len(files))
		for f := range files {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			hits = append(hits, gd.Scan(f, files[f])...)
		}
	} else {
		err := guard.WalkFiles(paths, func(p string) error {
			ls, err := guard.ReadFileLines(p)
			if err != nil {
				fmt.Fprintf(g.errOut, "credbroker: guard: skip %s: %v\n", p, err)
				return nil
			}
			hits = append(hits, gd.Scan(p, ls)...)
			return nil
		})
		if err != nil {
			return err
		}
	}
	text := o.output != "json"
	res := guardScan{Fingerprints: gd.Len(), Findings: []guardFinding{}}
	if len(hits) == 0 {
		if !text {
			return printJSON(g.out, res)
		}
		fmt.Fprintf(g.out, "no issued credentials found (%d live fingerprints)\n", gd.Len())
		return nil
	}
	revoked := map[string]bool{}
	for _, h := range hits {
		if text {
			fmt.Fprintf(g.out, "%s:%d: %s of session %s (%s, %s)\n", h.File, h.Line, h.What, h.Session, h.Provider, h.Encoding)
		}
		f := guardFinding{File: h.File, Line: h.Line, What: h.What, Session: h.Session, Provider: h.Provider, Encoding: h.Encoding}
		rep := broker.GuardHit{Session: h.Session, Provider: h.Provider, What: h.What, File: h.File, Line: h.Line,
			Encoding: h.Encoding, Fingerprint: h.Fingerprint, Revoke: !o.noRevoke && !revoked[h.Session]}
		if _, err := g.client().ReportGuardHit(context.WithoutCancel(ctx), rep); err != nil {
			fmt.Fprintf(g.errOut, "credbroker: guard: report to the daemon: %v\n", err)
		} else if rep.Revoke {
			revoked[h.Session] = true
			if text {
				fmt.Fprintf(g.out, "  session %s revoked\n", h.Session)
			}
		}
		f.Revoked = revoked[h.Session]
		res.Findings = append(res.Findings, f)
	}
	if !text {
		if err := printJSON(g.out, res); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: %d finding(s); remove them (and rotate anything derived from them)", errLeak, len(hits))
}

// guardScan is guard scan's JSON result. It names where each issued
// credential was found, never the credential.
type guardScan struct {
	Fingerprints int            `json:"fingerprints"`
	Findings     []guardFinding `json:"findings"`
}

type guardFinding struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	What     string `json:"what"`
	Session  string `json:"session"`
	Provider string `json:"provider"`
	Encoding string `json:"encoding"`
	Revoked  bool   `json:"revoked"`
}

const hookScript = `#!/bin/sh
# Installed by 'credbroker guard install-hook': refuse a commit that adds a
# credential the broker issued (and revoke the session it belongs to).
exec %q guard scan --staged%s
`

func runInstallHook(g *globalOpts, o *guardOpts) error {
	out, err := exec.Command("git", "rev-parse", "--git-path", "hooks").Output() //nolint:noctx // short local call
	if err != nil {
		return fmt.Errorf("not in a git repository (git rev-parse: %w)", err)
	}
	dir := string(bytes.TrimSpace(out))
	path := filepath.Join(dir, "pre-commit")
	if _, err := os.Stat(path); err == nil && !o.force {
		return usagef("%s exists; add 'credbroker guard scan --staged' to it, or pass --force to replace it", path)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	extra := ""
	if g.config != "" {
		extra = fmt.Sprintf(" --config %q", g.config)
	}
	if o.stateDir != "" {
		extra += fmt.Sprintf(" --state-dir %q", o.stateDir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, fmt.Appendf(nil, hookScript, self, extra), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(g.out, "installed %s\n", path)
	return nil
}
