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

// streamBuf is what redactReader and scanReader share. It reads into the
// caller's buffer and hands on at once what no later byte can change:
// everything but the last maxLen-1 bytes, which may start a match and are
// carried to the next read. Only a buffer that holds a match (rare) is
// rewritten into out.
type streamBuf struct {
	src   io.ReadCloser
	m     *matcher
	carry []byte // held back: may start a match
	out   []byte // rewritten, ready to hand on
	eof   bool
	err   error
}

func (s *streamBuf) read(p []byte, replace bool, hit func(int) error) (int, error) {
	if len(s.m.old) == 0 {
		return s.src.Read(p)
	}
	for {
		if len(s.out) > 0 {
			n := copy(p, s.out)
			s.out = s.out[n:]
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.eof {
			if len(s.carry) == 0 {
				s.err = io.EOF
				continue
			}
			d := s.carry
			s.carry = nil
			if _, err := s.process(d, true, replace, hit); err != nil {
				s.err = err
			}
			continue
		}
		buf := p
		small := len(p) < 2*s.m.maxLen+512
		if small {
			buf = make([]byte, 32<<10)
		}
		k := copy(buf, s.carry)
		n, err := s.src.Read(buf[k:])
		switch {
		case err == io.EOF:
			s.eof = true
		case err != nil:
			s.err = err
		}
		d := buf[:k+n]
		s.carry = nil
		if small || s.eof {
			// Rewrite into out (which copies d out of the caller's buffer).
			done, err := s.process(d, s.eof, replace, hit)
			if err != nil {
				s.err = err
				s.out = nil
				continue
			}
			s.carry = append([]byte(nil), d[done:]...)
			continue
		}
		limit := len(d) - (s.m.maxLen - 1)
		if limit <= 0 {
			s.carry = append([]byte(nil), d...)
			continue
		}
		if at, _ := s.m.next(d, 0); at < 0 || at >= limit {
			// The common case: nothing to change in what is handed on.
			s.carry = append(s.carry[:0], d[limit:]...)
			return limit, nil
		}
		done, err := s.process(d, false, replace, hit)
		if err != nil {
			s.err = err
			s.out = nil
			continue
		}
		s.carry = append([]byte(nil), d[done:]...)
	}
}

// process appends d, rewritten, to out up to the point no later byte can
// change (all of it when final) and returns that point. A match that
// starts before it is replaced (replace) or reported to hit, whose error
// stops the stream before the match is handed on.
func (s *streamBuf) process(d []byte, final, replace bool, hit func(int) error) (int, error) {
	limit := len(d)
	if !final {
		limit -= s.m.maxLen - 1
	}
	done := 0
	for done < limit {
		at, which := s.m.next(d, done)
		if at < 0 || at >= limit {
			break
		}
		if !replace {
			if err := hit(which); err != nil {
				return done, err
			}
		}
		s.out = append(s.out, d[done:at]...)
		if replace {
			s.out = append(s.out, s.m.repl[which]...)
		} else {
			s.out = append(s.out, s.m.old[which]...)
		}
		done = at + len(s.m.old[which])
	}
	if done < limit {
		s.out = append(s.out, d[done:limit]...)
		done = limit
	}
	return max(done, 0), nil
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
