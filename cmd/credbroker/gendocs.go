//go:build gendocs

package main

// Built with -tags gendocs (`make package` does), this main writes the man
// pages and shell completions of the cobra commands instead of running
// them, so bin/credbroker carries neither cobra/doc nor its markdown deps:
//
//	go run -tags gendocs ./cmd/credbroker OUTDIR
//
// writes OUTDIR/man1/*.1.gz and OUTDIR/completions/{credbroker.bash,
// _credbroker,credbroker.fish}. Pages are dated from $SOURCE_DATE_EPOCH
// (the commit time, so the same commit gives the same bytes).

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run -tags gendocs ./cmd/credbroker OUTDIR")
		os.Exit(exitUsage)
	}
	if err := genDocs(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(exitError)
	}
}

// genDocs writes the man pages and completions under out.
func genDocs(out string) error {
	date, err := sourceDate()
	if err != nil {
		return err
	}
	root := newRootCmd(&globalOpts{out: os.Stdout, errOut: os.Stderr, in: os.Stdin})
	root.DisableAutoGenTag = true
	if err := genMan(root, filepath.Join(out, "man1"), date); err != nil {
		return err
	}
	return genCompletions(root, filepath.Join(out, "completions"))
}

// sourceDate is $SOURCE_DATE_EPOCH, or now when it is unset.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Now().UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970 (git log -1 --format=%%ct)", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// genMan writes one gzipped page per command (credbroker.1.gz,
// credbroker-session-start.1.gz, ...); hidden commands get none.
func genMan(root *cobra.Command, dir string, date time.Time) error {
	tmp, err := os.MkdirTemp("", "credbroker-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	hdr := &doc.GenManHeader{
		Title: "CREDBROKER", Section: "1", Date: &date,
		Source: "credbroker " + version, Manual: "credbroker manual",
	}
	if err := doc.GenManTree(root, hdr, tmp); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	pages, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range pages {
		b, err := os.ReadFile(filepath.Join(tmp, p.Name()))
		if err != nil {
			return err
		}
		if err := writeGzip(filepath.Join(dir, p.Name()+".gz"), b); err != nil {
			return err
		}
	}
	return nil
}

// writeGzip writes b compressed, with no name or time in the gzip header
// (as `gzip -n`: reproducible, and what lintian asks of man pages).
func writeGzip(path string, b []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// genCompletions writes the bash, zsh and fish completion scripts; each
// asks `credbroker __complete` for candidates at run time.
func genCompletions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gens := []struct {
		name string
		gen  func(*bytes.Buffer) error
	}{
		{"credbroker.bash", func(w *bytes.Buffer) error { return root.GenBashCompletionV2(w, true) }},
		{"_credbroker", func(w *bytes.Buffer) error { return root.GenZshCompletion(w) }},
		{"credbroker.fish", func(w *bytes.Buffer) error { return root.GenFishCompletion(w, true) }},
	}
	for _, g := range gens {
		var buf bytes.Buffer
		if err := g.gen(&buf); err != nil {
			return fmt.Errorf("completion %s: %w", g.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, g.name), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
