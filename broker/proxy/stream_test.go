package proxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/credbroker/credbroker/internal/secret"
)

func vals(pairs ...string) []value {
	var out []value
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, value{name: pairs[i], what: "test " + pairs[i], real: secret.New(pairs[i]), placeholder: pairs[i+1]})
	}
	return out
}

// TestRedactReader swaps real values for placeholders wherever the reads
// that deliver them split them.
func TestRedactReader(t *testing.T) {
	vs := vals("REALTOKEN-aaaaaaaaaaaa", "PH-bbbbbbbbbbbbbbbbbbb", "SECRET-KEY-cccc", "PHKEY-ddddddddd-longer")
	tests := []struct{ name, in, want string }{
		{"none", "nothing to see here", "nothing to see here"},
		{"one", `{"id":"REALTOKEN-aaaaaaaaaaaa"}`, `{"id":"PH-bbbbbbbbbbbbbbbbbbb"}`},
		{"two kinds twice", "SECRET-KEY-cccc REALTOKEN-aaaaaaaaaaaa SECRET-KEY-cccc", "PHKEY-ddddddddd-longer PH-bbbbbbbbbbbbbbbbbbb PHKEY-ddddddddd-longer"},
		{"at the end", "x REALTOKEN-aaaaaaaaaaaa", "x PH-bbbbbbbbbbbbbbbbbbb"},
		{"prefix only", "REALTOKEN-aaa", "REALTOKEN-aaa"},
		{"back to back", "SECRET-KEY-ccccSECRET-KEY-cccc", "PHKEY-ddddddddd-longerPHKEY-ddddddddd-longer"},
		{"empty", "", ""},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole": func(r io.Reader) io.Reader { return r }, "one byte": iotest.OneByteReader, "half": iotest.HalfReader,
	}
	for _, tt := range tests {
		for rn, wrap := range readers {
			t.Run(tt.name+"/"+rn, func(t *testing.T) {
				r := &redactReader{src: io.NopCloser(wrap(strings.NewReader(tt.in))), m: realMatcher(vs)}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// TestRedactReaderLarge checks a value split across the 32 KiB reads.
func TestRedactReaderLarge(t *testing.T) {
	vs := vals("REALTOKEN-aaaaaaaaaaaa", "PH-bbbbbbbbbbbbbbbbbbb")
	in := bytes.Repeat([]byte("x"), 32<<10-5)
	in = append(in, "REALTOKEN-aaaaaaaaaaaa"...)
	in = append(in, bytes.Repeat([]byte("y"), 100<<10)...)
	got, err := io.ReadAll(&redactReader{src: io.NopCloser(bytes.NewReader(in)), m: realMatcher(vs)})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte("REALTOKEN")) || !bytes.Contains(got, []byte("PH-bbbbbbbbbbbbbbbbbbb")) || len(got) != len(in) {
		t.Fatalf("not redacted across a read boundary (len %d vs %d)", len(got), len(in))
	}
}

// TestScanReader fails a body at the first placeholder, before it is
// handed on.
func TestScanReader(t *testing.T) {
	vs := vals("real-one-xxxxxxxx", "PLACEHOLDER-ONE-zzzz")
	errLeak := errors.New("leak")
	for _, in := range []string{"a PLACEHOLDER-ONE-zzzz b", "PLACEHOLDER-ONE-zzzz", strings.Repeat("q", 70000) + "PLACEHOLDER-ONE-zzzz"} {
		var hit *value
		r := &scanReader{src: io.NopCloser(iotest.HalfReader(strings.NewReader(in))), m: newMatcher(vs), onHit: func(v value) error { hit = &v; return errLeak }}
		got, err := io.ReadAll(r)
		if !errors.Is(err, errLeak) || hit == nil || hit.name != "real-one-xxxxxxxx" {
			t.Fatalf("err %v, hit %v", err, hit)
		}
		if bytes.Contains(got, []byte("PLACEHOLDER-ONE")) {
			t.Fatal("the placeholder was handed on before the refusal")
		}
	}
	r := &scanReader{src: io.NopCloser(strings.NewReader("clean body")), m: newMatcher(vs), onHit: func(value) error { return errLeak }}
	if got, err := io.ReadAll(r); err != nil || string(got) != "clean body" {
		t.Fatalf("clean body: %q %v", got, err)
	}
}

// FuzzRedact: whatever the input and however it is split, no real value
// survives and the output is the input with each value swapped.
func FuzzRedact(f *testing.F) {
	f.Add([]byte("REALTOKEN-aaaaaaaaaaaa"), uint8(3))
	f.Add([]byte("xxREALTOKEN-aaaaaaaaaaaaREALTOKEN-aaaaaaaaaaaa"), uint8(1))
	vs := vals("REALTOKEN-aaaaaaaaaaaa", "PH-bbbbbbbbbbbbbbbbbbb", "SECRET-KEY-cccc", "PHKEY-ddddddddd-longer")
	want := strings.NewReplacer("REALTOKEN-aaaaaaaaaaaa", "PH-bbbbbbbbbbbbbbbbbbb", "SECRET-KEY-cccc", "PHKEY-ddddddddd-longer")
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var src io.Reader = bytes.NewReader(in)
		if split%2 == 1 {
			src = iotest.OneByteReader(src)
		}
		got, err := io.ReadAll(&redactReader{src: io.NopCloser(src), m: realMatcher(vs)})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want.Replace(string(in)) {
			t.Fatalf("redacted output differs from a plain replace (len %d vs %d)", len(got), len(want.Replace(string(in))))
		}
	})
}
