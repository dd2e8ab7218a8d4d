package guard

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
)

func lines(s string) []Line {
	var out []Line
	for i, l := range strings.Split(s, "\n") {
		out = append(out, Line{N: i + 1, Text: []byte(l)})
	}
	return out
}

func newGuard(t *testing.T) (*Guard, string, string) {
	t.Helper()
	g, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vaultTok := "hvs.CAESI" + strings.ReplaceAll(rand.Text()+rand.Text()+rand.Text(), "=", "")
	awsSecret := rand.Text() + rand.Text()[:14] // 40 chars, like an AWS secret key
	exp := time.Now().Add(time.Hour)
	if err := g.Add(
		Issued{Value: secret.New(vaultTok), Session: "s-one", Provider: "vault", What: "vault token", Expires: exp},
		Issued{Value: secret.New(awsSecret), Session: "s-two", Provider: "aws", What: "aws secret access key", Expires: exp},
		Issued{Value: secret.New("short"), Session: "s-one", Provider: "vault", What: "too short", Expires: exp},
	); err != nil {
		t.Fatal(err)
	}
	return g, vaultTok, awsSecret
}

func TestScanFindsEncodings(t *testing.T) {
	g, tok, awsSecret := newGuard(t)
	half := len(tok) / 2
	b64 := base64.StdEncoding.EncodeToString([]byte(`{"token":"` + tok + `"}`))
	wrapped := b64[:60] + "\n" + b64[60:]
	cases := []struct {
		name, text, session, enc string
		line                     int
	}{
		{"plain in a file", "export X=1\nVAULT_TOKEN=" + tok + "\n", "s-one", "plain", 2},
		{"in JSON", `{"a": 1,` + "\n" + `  "token": "` + tok + `"}`, "s-one", "plain", 2},
		{"split across JSON lines", `{"part": "` + tok[:half] + `" +` + "\n" + `        "` + tok[half:] + `"}`, "s-one", "split", 1},
		{"backslash-newline", "TOKEN=" + tok[:half] + "\\\n" + tok[half:], "s-one", "split", 1},
		{"base64", "data: " + b64 + "\n", "s-one", "base64", 1},
		{"base64 wrapped", "-----\n" + wrapped + "\n-----", "s-one", "base64", 2},
		{"url-encoded", "https://x.example/?t=" + url.QueryEscape(awsSecret), "s-two", "", 1},
		{"aws secret", "aws_secret_access_key = " + awsSecret, "s-two", "plain", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hits := g.Scan("f", lines(tc.text))
			if len(hits) == 0 {
				t.Fatalf("not found in %q", tc.name)
			}
			h := hits[0]
			if h.Session != tc.session || h.Line != tc.line || (tc.enc != "" && h.Encoding != tc.enc) {
				t.Fatalf("hit = %+v; want session %s line %d encoding %s", h, tc.session, tc.line, tc.enc)
			}
		})
	}
}

// TestScanNoFalsePositives: strings of the same shape that were not issued
// are never reported, nor is a short issued value.
func TestScanNoFalsePositives(t *testing.T) {
	g, tok, awsSecret := newGuard(t)
	var text strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&text, "token%d = hvs.CAESI%s\n", i, strings.ReplaceAll(rand.Text()+rand.Text()+rand.Text(), "=", ""))
		fmt.Fprintf(&text, "key%d = %s\n", i, rand.Text()+rand.Text()[:14])
		fmt.Fprintf(&text, "b64 = %s\n", base64.StdEncoding.EncodeToString([]byte(rand.Text()+rand.Text())))
	}
	text.WriteString("word short is here\n")
	// Near misses, each followed by a line that cannot continue it: a secret
	// cut at a line end and finished on the next line is a real (split) leak.
	text.WriteString(tok[:len(tok)-1] + "\n# end\n")    // one character short
	text.WriteString(awsSecret[1:] + "X" + "\n# end\n") // shifted
	if hits := g.Scan("f", lines(text.String())); len(hits) != 0 {
		t.Fatalf("false positives: %+v", hits)
	}
}

func TestFingerprintsNeverHoldTheValue(t *testing.T) {
	g, tok, awsSecret := newGuard(t)
	for _, f := range []string{FingerprintsFile, KeyFile} {
		b, err := os.ReadFile(filepath.Join(g.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{tok, awsSecret, tok[:20], awsSecret[:20]} {
			if strings.Contains(string(b), v) {
				t.Fatalf("%s contains (part of) an issued secret", f)
			}
		}
		if fi, _ := os.Stat(filepath.Join(g.dir, f)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	// Reopened (as the scanner does), the same key finds the same secret.
	ro, err := OpenReadOnly(g.dir)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Len() != 2 || len(ro.Scan("f", lines(tok))) != 1 {
		t.Fatalf("reopened guard: %d fingerprints; finds the token: %v", ro.Len(), ro.Scan("f", lines(tok)))
	}
}

func TestPruneDropsExpired(t *testing.T) {
	g, tok, _ := newGuard(t)
	g.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if err := g.Prune(); err != nil {
		t.Fatal(err)
	}
	if g.Len() != 0 || len(g.Scan("f", lines(tok))) != 0 {
		t.Fatalf("expired fingerprints kept: %d", g.Len())
	}
	b, _ := os.ReadFile(filepath.Join(g.dir, FingerprintsFile))
	if len(b) != 0 {
		t.Fatalf("pruned file still has %d bytes", len(b))
	}
}

func TestParseDiff(t *testing.T) {
	diff := `diff --git a/app/config.json b/app/config.json
index 1..2 100644
--- a/app/config.json
+++ b/app/config.json
@@ -3,0 +4,2 @@ x
+  "token": "abc",
+  "other": 1
@@ -10 +12 @@
-old
+new line
diff --git a/gone.txt b/gone.txt
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
`
	got, err := ParseDiff(strings.NewReader(diff))
	if err != nil {
		t.Fatal(err)
	}
	ls := got["app/config.json"]
	if len(ls) != 3 || ls[0].N != 4 || ls[1].N != 5 || ls[2].N != 12 || string(ls[2].Text) != "new line" {
		t.Fatalf("parsed = %+v", ls)
	}
	if len(got) != 1 {
		t.Fatalf("files = %v", got)
	}
}

// TestOpenRefusesUnsafeKey: the daemon refuses a fingerprint key open to
// group or others, owned by another uid or reached through a symlink (any
// of them lets someone else test guesses against the fingerprints or
// replace the key), and names the file and the fix.
func TestOpenRefusesUnsafeKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		unsafe func(t *testing.T, key string) (planted string) // planted: must not be written
		want   string
	}{
		{"mode 0644", func(t *testing.T, key string) string { chmod(t, key, 0o644); return "" }, "mode 0644"},
		{"mode 0660", func(t *testing.T, key string) string { chmod(t, key, 0o660); return "" }, "mode 0660"},
		{"owned by another uid", func(t *testing.T, key string) string {
			if os.Geteuid() != 0 {
				t.Fatal("needs root to chown (the test suite runs as root): run make test as root, as CI does")
			}
			if err := os.Chown(key, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return ""
		}, "owned by uid 65534"},
		{"symlink", func(t *testing.T, key string) string {
			other := filepath.Join(t.TempDir(), "elsewhere.key")
			if err := os.Rename(key, other); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, key); err != nil {
				t.Fatal(err)
			}
			return ""
		}, "is a symlink"},
		{"dangling symlink", func(t *testing.T, key string) string {
			if err := os.Remove(key); err != nil {
				t.Fatal(err)
			}
			planted := filepath.Join(t.TempDir(), "planted")
			if err := os.Symlink(planted, key); err != nil {
				t.Fatal(err)
			}
			return planted
		}, "is a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Open(dir); err != nil { // creates the key, 0600
				t.Fatal(err)
			}
			key := filepath.Join(dir, KeyFile)
			planted := tc.unsafe(t, key)
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), key) {
				t.Fatalf("Open with an unsafe key: %v, want an error naming %s and %q", err, key, tc.want)
			}
			if _, err := os.Lstat(planted); planted != "" && err == nil {
				t.Errorf("Open wrote a key through a planted symlink")
			}
		})
	}
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

// TestVerify: a hit's fingerprint is accepted for the session whose secret
// it is, and for no other session; a made-up, empty or expired one never.
func TestVerify(t *testing.T) {
	g, tok, awsSecret := newGuard(t)
	hits := g.Scan("f", lines("a="+tok+"\nb="+awsSecret))
	if len(hits) != 2 {
		t.Fatalf("want 2 hits, got %+v", hits)
	}
	macOne, macTwo := hits[0].Fingerprint, hits[1].Fingerprint
	if hits[0].Session != "s-one" || hits[1].Session != "s-two" || len(macOne) != 64 {
		t.Fatalf("hits = %+v", hits)
	}
	cases := []struct {
		name, session, mac string
		ok                 bool
	}{
		{"own fingerprint", "s-one", macOne, true},
		{"other session's fingerprint", "s-two", macOne, false},
		{"other session's, the other way", "s-one", macTwo, false},
		{"made up", "s-one", strings.Repeat("ab", 32), false},
		{"empty", "s-one", "", false},
		{"unknown session", "s-three", macOne, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fp, ok := g.Verify(tc.session, tc.mac)
			if ok != tc.ok || (ok && fp.Session != tc.session) {
				t.Fatalf("Verify(%s) = %+v, %v; want ok=%v", tc.session, fp, ok, tc.ok)
			}
		})
	}
	g.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, ok := g.Verify("s-one", macOne); ok {
		t.Fatal("an expired fingerprint verified")
	}
}
