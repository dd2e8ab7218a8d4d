package proxy

import (
	"bytes"
	"io"
)

// matcher finds any of a set of strings in a byte stream, across the
// boundaries of the reads that deliver it.
type matcher struct {
	vals []value
	// old and repl are the strings looked for and what replaces them;
	// idx[i] is the index in vals of old[i].
	old, repl [][]byte
	idx       []int
	maxLen    int
}

// newMatcher looks for the placeholders of vals.
func newMatcher(vals []value) *matcher { return buildMatcher(vals, false) }

// realMatcher looks for the real values of vals, to replace them by their
// placeholders.
func realMatcher(vals []value) *matcher { return buildMatcher(vals, true) }

// buildMatcher looks for the real values of vals (replacing them by their
// placeholders) when forReal, else for the placeholders.
func buildMatcher(vals []value, forReal bool) *matcher {
	m := &matcher{vals: vals}
	for k, v := range vals {
		o, n := []byte(v.placeholder), []byte(nil)
		if forReal {
			o, n = []byte(v.real.Reveal()), []byte(v.placeholder)
		}
		if len(o) == 0 {
			continue
		}
		m.old, m.repl, m.idx = append(m.old, o), append(m.repl, n), append(m.idx, k)
		m.maxLen = max(m.maxLen, len(o))
	}
	return m
}

// next finds the earliest match in b at or after from; it returns its
// start and index, or -1.
func (m *matcher) next(b []byte, from int) (int, int) {
	best, which := -1, -1
	for i, o := range m.old {
		if j := bytes.Index(b[from:], o); j >= 0 && (best < 0 || from+j < best) {
			best, which = from+j, i
		}
	}
	return best, which
}

// streamBuf is what redactReader and scanReader share: pending input and
// the part of it that is safe to hand on.
type streamBuf struct {
	src  io.ReadCloser
	m    *matcher
	in   []byte // read, not yet examined in full
	out  []byte // examined, ready to return
	eof  bool
	err  error
	temp [32 << 10]byte
}

// fill reads more input and moves to out what no later byte can change:
// everything except the last maxLen-1 bytes (a match may start there),
// unless the input ended. replace says what a match becomes (nil: the
// match stays and hit is called).
func (s *streamBuf) fill(replace bool, hit func(int) error) error {
	for len(s.out) == 0 && s.err == nil {
		if !s.eof {
			n, err := s.src.Read(s.temp[:])
			s.in = append(s.in, s.temp[:n]...)
			if err == io.EOF {
				s.eof = true
			} else if err != nil {
				s.err = err
				return err
			}
		}
		limit := len(s.in) // positions before limit may start a match
		if !s.eof {
			limit -= s.m.maxLen - 1
		}
		if limit <= 0 {
			if s.eof {
				s.err = io.EOF
			}
			continue
		}
		done := 0
		for done < limit {
			at, which := s.m.next(s.in, done)
			if at < 0 || at >= limit {
				break
			}
			if !replace {
				if err := hit(which); err != nil {
					s.err = err
					return err
				}
			}
			s.out = append(s.out, s.in[done:at]...)
			if replace {
				s.out = append(s.out, s.m.repl[which]...)
			} else {
				s.out = append(s.out, s.m.old[which]...)
			}
			done = at + len(s.m.old[which])
		}
		if done < limit {
			s.out = append(s.out, s.in[done:limit]...)
			done = limit
		}
		s.in = append(s.in[:0], s.in[done:]...)
		if s.eof && len(s.in) == 0 && len(s.out) == 0 {
			s.err = io.EOF
		}
	}
	return nil
}

func (s *streamBuf) read(p []byte, replace bool, hit func(int) error) (int, error) {
	if len(s.m.old) == 0 {
		return s.src.Read(p)
	}
	_ = s.fill(replace, hit) // sets s.err
	if len(s.out) == 0 {
		return 0, s.err
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// redactReader swaps the session's real values for placeholders in an
// answer's body.
type redactReader struct {
	src io.ReadCloser
	m   *matcher
	sb  *streamBuf
}

func (r *redactReader) Read(p []byte) (int, error) {
	if r.sb == nil {
		r.sb = &streamBuf{src: r.src, m: r.m}
	}
	return r.sb.read(p, true, nil)
}

func (r *redactReader) Close() error { return r.src.Close() }

// scanReader passes a request body on and fails it at the first
// placeholder it finds (onHit's error), before that placeholder is sent.
type scanReader struct {
	src   io.ReadCloser
	m     *matcher
	onHit func(value) error
	sb    *streamBuf
}

func (r *scanReader) Read(p []byte) (int, error) {
	if r.sb == nil {
		r.sb = &streamBuf{src: r.src, m: r.m}
	}
	return r.sb.read(p, false, func(i int) error { return r.onHit(r.m.vals[r.m.idx[i]]) })
}

func (r *scanReader) Close() error { return r.src.Close() }
