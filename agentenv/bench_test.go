package agentenv

import (
	"fmt"
	"sync"
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

// BenchmarkRemove100: one op removes 100 session dirs, by 1 worker and by
// 4 (as revoke --all's wipe does). Mutations of different sessions take
// different locks, so the 4 workers really overlap (the ratio of the two
// is the parallel speed-up on this machine's cores).
func BenchmarkRemove100(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			w, _ := newWriter(b)
			files, env := testFiles(), testEnv()
			m := testMeta("")
			round := 0
			for b.Loop() {
				b.StopTimer()
				ids := make(chan string, 100)
				for i := range 100 {
					m.ID = fmt.Sprintf("s-r%dx%d", round, i)
					if _, err := w.Create(m, files, env); err != nil {
						b.Fatal(err)
					}
					ids <- m.ID
				}
				close(ids)
				round++
				b.StartTimer()
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for id := range ids {
							if err := w.Remove(id); err != nil {
								b.Error(err)
							}
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
