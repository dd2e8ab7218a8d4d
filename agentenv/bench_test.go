package agentenv

import (
	"fmt"
	"testing"

	"github.com/credbroker/credbroker/internal/secret"
)

// BenchmarkCreate measures writing a typical six-file session dir; the
// removal of each dir is not timed.
func BenchmarkCreate(b *testing.B) {
	w, _ := newWriter(b)
	files, env := testFiles(), testEnv()
	m := testMeta("")
	i := 0
	for b.Loop() {
		m.ID = fmt.Sprintf("s-%d", i)
		i++
		if _, err := w.Create(m, files, env); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := w.Remove(m.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkUpdate measures a refresh: two files and the env file.
func BenchmarkUpdate(b *testing.B) {
	w, _ := newWriter(b)
	if _, err := w.Create(testMeta("s-bench"), testFiles(), testEnv()); err != nil {
		b.Fatal(err)
	}
	files := map[string]secret.Value{
		"vault/token": secret.New("hvs.renewed"),
		"kube/token":  secret.New("eyJrenewed"),
	}
	env := testEnv()
	for b.Loop() {
		if err := w.Update("s-bench", -1, files, env); err != nil {
			b.Fatal(err)
		}
	}
}
