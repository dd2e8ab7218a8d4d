package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
)

// oneShotWriter is the http.ResponseWriter of a plain-http forward
// request: it writes one HTTP/1.1 response on the sandbox's connection,
// which closes after it.
type oneShotWriter struct {
	w       *bufio.Writer
	h       http.Header
	wrote   bool
	chunked io.WriteCloser
	noBody  bool
}

func newOneShotWriter(w io.Writer) *oneShotWriter {
	return &oneShotWriter{w: bufio.NewWriterSize(w, copyBuffer), h: http.Header{}}
}

func (o *oneShotWriter) Header() http.Header { return o.h }

func (o *oneShotWriter) WriteHeader(code int) {
	if o.wrote || code < 200 { // 1xx answers are not relayed here
		return
	}
	o.wrote = true
	o.noBody = code == http.StatusNoContent || code == http.StatusNotModified
	o.h.Del("Transfer-Encoding")
	o.h.Set("Connection", "close")
	if _, err := strconv.ParseUint(o.h.Get("Content-Length"), 10, 63); err != nil && !o.noBody {
		o.h.Del("Content-Length")
		o.h.Set("Transfer-Encoding", "chunked")
		o.chunked = httputil.NewChunkedWriter(o.w)
	}
	fmt.Fprintf(o.w, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	_ = o.h.Write(o.w)
	_, _ = o.w.WriteString("\r\n")
}

func (o *oneShotWriter) Write(p []byte) (int, error) {
	o.WriteHeader(http.StatusOK)
	if o.noBody {
		return len(p), nil
	}
	if o.chunked != nil {
		return o.chunked.Write(p)
	}
	return o.w.Write(p)
}

// Flush sends what is buffered (http.Flusher: streamed answers).
func (o *oneShotWriter) Flush() { _ = o.w.Flush() }

// finish ends the body and flushes.
func (o *oneShotWriter) finish() {
	o.WriteHeader(http.StatusOK)
	if o.chunked != nil {
		_ = o.chunked.Close()
		_, _ = o.w.WriteString("\r\n")
	}
	_ = o.w.Flush()
}
