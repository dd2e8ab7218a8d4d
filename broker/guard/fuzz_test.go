package guard

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
)

// FuzzScan: scanning any text never panics, and a text that contains the
// issued secret verbatim is always reported.
func FuzzScan(f *testing.F) {
	g, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	const tok = "hvs.CAESIfuzzfuzzfuzzfuzzfuzzfuzzfuzz"
	if err := g.Add(Issued{Value: secret.New(tok), Session: "s-f", Provider: "vault", What: "vault token", Expires: time.Now().Add(time.Hour)}); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("plain text"), []byte("x="))
	f.Add([]byte("{\"a\": \""), []byte("\"}"))
	f.Add([]byte("%%%%"), []byte("===="))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		_ = g.Scan("f", lines(string(before)+string(after)))
		// Separate the secret from the surrounding text by newlines so it
		// stands as its own run.
		text := string(before) + "\n" + tok + "\n" + string(after)
		hits := g.Scan("f", lines(text))
		if len(hits) == 0 {
			t.Fatalf("the issued token was not found in %q", text)
		}
	})
}

// FuzzParseDiff: the diff parser never panics and every line it returns
// was an added line of the input.
func FuzzParseDiff(f *testing.F) {
	f.Add([]byte("+++ b/a\n@@ -1 +1,2 @@\n+x\n+y\n"))
	f.Add([]byte("@@ bad\n"))
	f.Add([]byte("+++ /dev/null\n+gone\n"))
	f.Fuzz(func(t *testing.T, diff []byte) {
		files, err := ParseDiff(bytes.NewReader(diff))
		if err != nil {
			if !strings.Contains(err.Error(), "guard:") {
				t.Fatalf("unclear error: %v", err)
			}
			return
		}
		for _, ls := range files {
			for _, l := range ls {
				if !bytes.Contains(diff, append([]byte("+"), l.Text...)) {
					t.Fatalf("line %q was not added in the diff", l.Text)
				}
			}
		}
	})
}
