package awssig

import (
	"bufio"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Bounds of an aws-chunked body (SDKs send 8 KiB to 1 MiB chunks).
const (
	maxChunkSize  = 8 << 20
	maxLineLen    = 4 << 10 // a chunk header or trailer line
	maxTrailerLen = 16 << 10
)

const (
	chunkSigPrefix   = ";chunk-signature="
	trailerSigHeader = "x-amz-trailer-signature"
	emptySHA256      = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// chain is one signature chain of a streaming body: the signing key and
// scope of the request and the previous signature (the request's own at
// first).
type chain struct {
	key     []byte
	amzDate string
	scope   string
	prev    []byte
}

// next signs the chunk whose data hashes to dataHash and advances the chain.
func (c *chain) next(dataHash string) []byte {
	sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + c.amzDate + "\n" + c.scope + "\n" +
		hex.EncodeToString(c.prev) + "\n" + emptySHA256 + "\n" + dataHash
	c.prev = hmacSHA256(c.key, []byte(sts))
	return c.prev
}

// trailer signs the canonical trailer headers and advances the chain.
func (c *chain) trailer(canonical string) []byte {
	sts := "AWS4-HMAC-SHA256-TRAILER\n" + c.amzDate + "\n" + c.scope + "\n" +
		hex.EncodeToString(c.prev) + "\n" + sha256Hex([]byte(canonical))
	c.prev = hmacSHA256(c.key, []byte(sts))
	return c.prev
}

// chunkRewriter reads an aws-chunked body signed with one chain, checks
// every chunk (and the trailer) against it and yields the same body signed
// with another chain. The chunk sizes and lengths do not change. One chunk
// is held at a time, in one buffer: read, checked, its signature replaced.
type chunkRewriter struct {
	src      *bufio.Reader
	closer   io.Closer
	from, to chain
	trailer  bool   // STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER
	n        int    // chunks read, for errors
	buf      []byte // the current chunk, re-signed
	off      int    // how much of buf was read
	done     bool
	err      error
}

func newChunkRewriter(body io.ReadCloser, from, to chain, trailer bool) *chunkRewriter {
	return &chunkRewriter{src: bufio.NewReaderSize(body, 64<<10), closer: body, from: from, to: to, trailer: trailer}
}

// Read implements io.Reader.
func (w *chunkRewriter) Read(p []byte) (int, error) {
	for w.off == len(w.buf) {
		if w.err != nil {
			return 0, w.err
		}
		if w.done {
			return 0, io.EOF
		}
		w.buf, w.off = w.buf[:0], 0
		w.err = w.step()
	}
	n := copy(p, w.buf[w.off:])
	w.off += n
	return n, nil
}

// Close implements io.Closer.
func (w *chunkRewriter) Close() error { return w.closer.Close() }

func chunkErr(n int, what string) *RefusedError {
	return refuse(CodeSignatureDoesNotMatch, fmt.Sprintf("aws-chunked body, chunk %d: %s", n, what))
}

// step reads one chunk into w.buf, re-signed.
func (w *chunkRewriter) step() error {
	w.n++
	line, err := readLine(w.src)
	if err != nil {
		return chunkErr(w.n, err.Error())
	}
	sizeHex, sigHex, ok := strings.Cut(line, chunkSigPrefix)
	if !ok || len(sizeHex) == 0 || len(sizeHex) > 8 || !allIn(sizeHex, isHexDigit) {
		return chunkErr(w.n, "header is not hex-size;chunk-signature=signature")
	}
	size, _ := strconv.ParseUint(sizeHex, 16, 32) // at most 8 hex digits
	if size > maxChunkSize {
		return chunkErr(w.n, "larger than 8 MiB")
	}
	if len(sigHex) != 64 || !allIn(sigHex, isLowerHex) {
		return chunkErr(w.n, "chunk-signature is not 64 lower-case hex digits")
	}
	// The header's length does not depend on the signature: read the
	// data into place behind it, then write the new signature in front.
	head := len(sizeHex) + len(chunkSigPrefix) + 64 + 2
	if need := head + int(size) + 2; cap(w.buf) < need {
		w.buf = make([]byte, 0, need)
	}
	b := w.buf[:head+int(size)]
	data := b[head:]
	if _, err := io.ReadFull(w.src, data); err != nil {
		return chunkErr(w.n, "body ends inside the chunk")
	}
	h := sha256Hex(data)
	got, _ := hex.DecodeString(sigHex)
	if subtle.ConstantTimeCompare(w.from.next(h), got) != 1 {
		return chunkErr(w.n, "chunk-signature does not match its data")
	}
	i := copy(b, sizeHex+chunkSigPrefix)
	i += hex.Encode(b[i:], w.to.next(h))
	copy(b[i:], "\r\n")
	w.buf = b
	if size == 0 {
		return w.end()
	}
	return w.expectCRLF()
}

func (w *chunkRewriter) expectCRLF() error {
	var crlf [2]byte
	if _, err := io.ReadFull(w.src, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
		return chunkErr(w.n, "data is not followed by CRLF")
	}
	w.buf = append(w.buf, '\r', '\n')
	return nil
}

// end handles what follows the final, empty chunk: CRLF, or the trailer
// headers and their signature, then the end of the body.
func (w *chunkRewriter) end() error {
	if w.trailer {
		if err := w.rewriteTrailer(); err != nil {
			return err
		}
	} else if err := w.expectCRLF(); err != nil {
		return err
	}
	if _, err := w.src.ReadByte(); !errors.Is(err, io.EOF) {
		return chunkErr(w.n, "data after the final chunk")
	}
	w.done = true
	return nil
}

// rewriteTrailer reads "name:value" lines up to x-amz-trailer-signature,
// checks the signature over them and writes them with the new one.
func (w *chunkRewriter) rewriteTrailer() error {
	var canonical strings.Builder
	var lines []string
	for total := 0; ; {
		line, err := readLine(w.src)
		if err != nil {
			return chunkErr(w.n, "trailer: "+err.Error())
		}
		if total += len(line); total > maxTrailerLen {
			return chunkErr(w.n, "trailer longer than 16 KiB")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return chunkErr(w.n, "trailer line is not name:value")
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if name == trailerSigHeader {
			return w.finishTrailer(lines, canonical.String(), strings.TrimSpace(value))
		}
		canonical.WriteString(name + ":" + strings.TrimSpace(value) + "\n")
		lines = append(lines, line)
	}
}

func (w *chunkRewriter) finishTrailer(lines []string, canonical, sigHex string) error {
	got, err := hex.DecodeString(sigHex)
	if err != nil || len(got) != 32 {
		return chunkErr(w.n, "x-amz-trailer-signature is not 64 hex digits")
	}
	if subtle.ConstantTimeCompare(w.from.trailer(canonical), got) != 1 {
		return chunkErr(w.n, "x-amz-trailer-signature does not match the trailer")
	}
	for _, l := range lines {
		w.buf = append(w.buf, l+"\r\n"...)
	}
	w.buf = append(w.buf, trailerSigHeader+":"+hex.EncodeToString(w.to.trailer(canonical))+"\r\n"...)
	return w.expectCRLF()
}

// readLine reads a CRLF-terminated line of at most maxLineLen bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxLineLen {
			return "", errors.New("line longer than 4 KiB")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("body ends inside a line")
		}
	}
	if len(b) < 2 || b[len(b)-2] != '\r' {
		return "", errors.New("line does not end in CRLF")
	}
	return string(b[:len(b)-2]), nil
}

func isHexDigit(c byte) bool { return isLowerHex(c) || c >= 'A' && c <= 'F' }
