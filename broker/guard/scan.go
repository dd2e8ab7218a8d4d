package guard

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"regexp"
	"sort"
)

// Hit is an issued secret found somewhere it should not be.
type Hit struct {
	File     string
	Line     int
	Session  string
	Provider string
	What     string
	Encoding string // "plain", "split", "base64", "url"
	// Fingerprint is the secret's keyed fingerprint (hex HMAC, never the
	// secret): the daemon accepts a reported hit only when it is one of
	// the named session's (see Guard.Verify).
	Fingerprint string
}

// Line is one line of input with its number in its file.
type Line struct {
	N    int
	Text []byte
}

// tokenRun is a maximal run of characters secrets are made of.
var tokenRun = regexp.MustCompile(`[A-Za-z0-9+/=_.~-]+`)

type run struct {
	start int // offset in the squeezed stream
	line  int
	text  []byte
}

// punct is a run with no letter or digit (a "+" joining JSON string
// pieces, a "---" rule): it is not part of any secret's text.
var punct = regexp.MustCompile(`^[+=/._~-]+$`)

// starts are the offsets in a run where a secret may begin: the run's
// start and just after each "=" (KEY=value, ?t=value).
func starts(r run) []int {
	out := []int{r.start}
	for i, c := range r.text {
		if c == '=' && i+1 < len(r.text) {
			out = append(out, r.start+i+1)
		}
	}
	return out
}

// Scan looks for issued secrets in lines of one file. It finds a secret
// written as is; split across lines or string pieces (as when a JSON value
// is wrapped: quotes, commas, whitespace, backslash-newline and + between
// the pieces are ignored); base64-encoded (standard or URL alphabet, padded
// or not, also when wrapped); and URL-encoded (%XX). It fingerprints only
// windows that start where a run of token characters starts and that have
// the length of some issued secret, so the cost is a few HMACs per word.
func (g *Guard) Scan(file string, lines []Line) []Hit {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.fps) == 0 {
		return nil
	}
	found := map[[2]any]Hit{}
	add := func(h Hit) {
		k := [2]any{h.Line, h.Session + "/" + h.What}
		if _, dup := found[k]; !dup {
			found[k] = h
		}
	}
	g.scanRuns(file, lines, "plain", add)
	// URL-encoded text: decode lines that have escapes and scan again.
	var decoded []Line
	for _, l := range lines {
		if bytes.IndexByte(l.Text, '%') >= 0 {
			if s, err := url.QueryUnescape(string(l.Text)); err == nil {
				decoded = append(decoded, Line{N: l.N, Text: []byte(s)})
			}
		}
	}
	if len(decoded) > 0 {
		g.scanRuns(file, decoded, "url", add)
	}
	out := make([]Hit, 0, len(found))
	for _, h := range found {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

func (g *Guard) scanRuns(file string, lines []Line, enc string, add func(Hit)) {
	var runs []run
	var squeezed []byte
	for _, l := range lines {
		for _, loc := range tokenRun.FindAllIndex(l.Text, -1) {
			t := l.Text[loc[0]:loc[1]]
			if punct.Match(t) {
				continue
			}
			runs = append(runs, run{start: len(squeezed), line: l.N, text: t})
			squeezed = append(squeezed, t...)
		}
	}
	lens := g.lengths()
	for i, r := range runs {
		for _, s := range starts(r) {
			for _, n := range lens {
				end := s + n
				if end > len(squeezed) {
					continue
				}
				if fp, ok := g.lookup(squeezed[s:end]); ok {
					e := enc
					if enc == "plain" && end > r.start+len(r.text) {
						e = "split"
					}
					add(Hit{File: file, Line: r.line, Session: fp.Session, Provider: fp.Provider, What: fp.What, Encoding: e, Fingerprint: fp.MAC})
				}
			}
		}
		// base64: this run, and runs joined across wrapped lines.
		g.scanBase64(file, runs[i:], add)
	}
}

// scanBase64 decodes the base64 text starting at runs[0] (joined with the
// following runs while they look like wrapped base64) and scans the result.
func (g *Guard) scanBase64(file string, runs []run, add func(Hit)) {
	const maxJoin = 64
	var b64 []byte
	for j := 0; j < len(runs) && j < maxJoin; j++ {
		b64 = append(b64, runs[j].text...)
		if len(runs[j].text) < 60 { // a full wrapped base64 line is 60-76
			break
		}
	}
	if len(b64) < (MinLen*4)/3 {
		return
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		dec, err := enc.DecodeString(string(b64))
		if err != nil || len(dec) < MinLen {
			continue
		}
		for _, loc := range tokenRun.FindAllIndex(dec, -1) {
			t := dec[loc[0]:loc[1]]
			for _, n := range g.lengths() {
				if len(t) >= n {
					if fp, ok := g.lookup(t[:n]); ok {
						add(Hit{File: file, Line: runs[0].line, Session: fp.Session, Provider: fp.Provider, What: fp.What, Encoding: "base64", Fingerprint: fp.MAC})
					}
				}
			}
		}
		return
	}
}
