package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
)

type auditOpts struct {
	file    string
	head    string
	follow  bool
	session string
	lines   int
	output  string
}

func newAuditCmd(g *globalOpts) *cobra.Command {
	o := &auditOpts{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify or read the hash-chained audit log",
	}
	cmd.PersistentFlags().StringVar(&o.file, "file", "", "audit log (default: the config's broker.audit_log)")
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check every link of the audit log's hash chain",
		Long: `Check that no record was edited, deleted or reordered: each record carries
its sequence number and the SHA-256 of the previous line. Prints the number
of records and the head hash; keep the head elsewhere and pass it with
--head next time to also catch a truncated or edited last record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			return runAuditVerify(g, o)
		},
	}
	verify.Flags().StringVar(&o.head, "head", "", "head hash from an earlier verify (catches truncation)")
	verify.Flags().StringVarP(&o.output, "output", "o", "text", `output format: text or json ({"path", "ok", "records", "head"}, or "ok": false with "line", "seq", "why")`)
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print audit records for humans",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runAuditTail(cmd.Context(), g, o) },
	}
	tail.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing new records")
	tail.Flags().StringVar(&o.session, "session", "", "only records of this session")
	tail.Flags().IntVarP(&o.lines, "lines", "n", 20, "how many of the last records to print first (0: all)")
	cmd.AddCommand(verify, tail)
	return cmd
}

func (o *auditOpts) path(g *globalOpts) (string, error) {
	if o.file != "" {
		return o.file, nil
	}
	p, err := configs.Find(g.config)
	if err != nil {
		return "", fmt.Errorf("%w (or name the log with --file)", err)
	}
	cfg, err := configs.Load(p)
	if err != nil {
		return "", err
	}
	return cfg.Broker.AuditLog, nil
}

func runAuditVerify(g *globalOpts, o *auditOpts) error {
	path, err := o.path(g)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := broker.VerifyAudit(f, o.head)
	var ce *broker.ChainError
	if o.output == "json" && (err == nil || errors.As(err, &ce)) {
		out := auditVerify{Path: path, OK: err == nil, Records: res.Records, Head: res.Head}
		if ce != nil {
			out.Line, out.Seq, out.Why = ce.Line, ce.Seq, ce.Why
		}
		if perr := printJSON(g.out, out); perr != nil {
			return perr
		}
	}
	if err != nil {
		if ce != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return err
	}
	if o.output != "json" {
		fmt.Fprintf(g.out, "%s: %d records, chain intact\nhead %s\n", path, res.Records, res.Head)
	}
	return nil
}

// auditVerify is audit verify's JSON result.
type auditVerify struct {
	Path    string `json:"path"`
	OK      bool   `json:"ok"`
	Records uint64 `json:"records"`
	Head    string `json:"head,omitempty"`
	Line    int    `json:"line,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Why     string `json:"why,omitempty"`
}

func runAuditTail(ctx context.Context, g *globalOpts, o *auditOpts) error {
	path, err := o.path(g)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var recs []broker.AuditRecord
	if err := broker.ReadAudit(f, func(r broker.AuditRecord) {
		if o.session == "" || r.Session == o.session {
			recs = append(recs, r)
		}
	}); err != nil {
		return err
	}
	if o.lines > 0 && len(recs) > o.lines {
		recs = recs[len(recs)-o.lines:]
	}
	for _, r := range recs {
		printRecord(g.out, r)
	}
	if !o.follow {
		return nil
	}
	// Follow: poll for growth; the log is append-only.
	pos, _ := f.Seek(0, io.SeekCurrent)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
		st, err := f.Stat()
		if err != nil || st.Size() <= pos {
			continue
		}
		sr := io.NewSectionReader(f, pos, st.Size()-pos)
		_ = broker.ReadAudit(sr, func(r broker.AuditRecord) {
			if o.session == "" || r.Session == o.session {
				printRecord(g.out, r)
			}
		})
		pos = st.Size()
	}
}

func printRecord(w io.Writer, r broker.AuditRecord) {
	parts := []string{r.Time.Local().Format(time.DateTime), fmt.Sprintf("%-22s", r.Event.Event)}
	for _, kv := range [][2]string{{"session", r.Session}, {"role", r.Role}, {"provider", r.Provider}, {"lease", r.Lease},
		{"reason", r.Reason}, {"error", r.Error}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+oneLine(kv[1]))
		}
	}
	if r.CallerUID != nil {
		parts = append(parts, fmt.Sprintf("uid=%d", *r.CallerUID))
	}
	if e := r.Egress; e != nil {
		parts = append(parts, fmt.Sprintf("%s %s %s:%d addr=%s rule=%s up=%d down=%d ms=%d",
			e.Decision, e.Proto, e.Host, e.Port, e.Addr, oneLine(e.Rule), e.BytesUp, e.BytesDown, e.DurationMS))
	}
	fmt.Fprintln(w, strings.Join(parts, " "))
}
