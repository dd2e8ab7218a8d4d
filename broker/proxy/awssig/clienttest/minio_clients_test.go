package clienttest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/credbroker/credbroker/broker/proxy/awssig"
	"github.com/credbroker/credbroker/broker/proxy/awssig/awssigtest"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
)

// python3WithBoto3 is the first python3 that imports boto3: the one on
// $PATH, else Debian's (python3-boto3, from scripts/install-deps.sh).
func python3WithBoto3(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(py); err == nil && exec.Command(p, "-c", "import boto3").Run() == nil {
			return p
		}
	}
	t.Fatal("no python3 with boto3: install it with `apt-get install python3-boto3` (scripts/install-deps.sh does)")
	return ""
}

// boto3 with the placeholders: put, get, a 20 MB multipart upload and its
// download, a listing. Over HTTPS current botocore sends uploads as
// aws-chunked STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC trailer.
func TestMinIOBoto3(t *testing.T) {
	py := python3WithBoto3(t)
	m := newMinIORig(t)
	src, data := randomFile(t, 20<<20)
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tls]
		t.Run(name, func(t *testing.T) {
			p, endpoint, ca := m.proxy(t, m.session, tls)
			dst := filepath.Join(t.TempDir(), "down.bin")
			out := mustRun(t, m.clientEnv(t, ca), py, "testdata/boto3_s3.py", endpoint, miniotest.Readable, src, dst)
			if !strings.Contains(out, "boto3-big.bin") || !strings.Contains(out, "boto3-small.txt") {
				t.Fatalf("boto3 listing lacks its uploads:\n%s", out)
			}
			assertSameFile(t, dst, data)
			p.assertNoRefusals(t)
			t.Logf("%s; payload modes re-signed: %q", strings.TrimSpace(out), p.seen())
		})
	}
}

// The signed aws-chunked modes (minio-go and the Java SDK stream uploads
// this way over HTTP): each chunk is re-signed on its way and MinIO checks
// the real chain, and the CRC32 trailer when there is one.
func TestMinIOStreamingSigned(t *testing.T) {
	m := newMinIORig(t)
	_, endpoint, _ := m.proxy(t, m.session, false)
	data := bytes.Repeat([]byte("streamed through the re-signing proxy\n"), 50000) // 1.9 MB
	crc := make([]byte, 4)
	binary.BigEndian.PutUint32(crc, crc32.ChecksumIEEE(data))
	trailer := "x-amz-checksum-crc32:" + base64.StdEncoding.EncodeToString(crc)
	cases := []struct {
		name, mode string
		trailers   []string
		tamper     bool
	}{
		{"signed chunks", awssig.StreamingSigned, nil, false},
		{"signed chunks and trailer", awssig.StreamingSignedTrailer, []string{trailer}, false},
		{"tampered chunk", awssig.StreamingSigned, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := strings.ReplaceAll(tc.name, " ", "-")
			body := streamedBody(t, m, endpoint+"/"+miniotest.Readable+"/"+key, data, tc.mode, tc.trailers)
			if tc.tamper {
				b := body.bodyBytes
				b[len(b)/2] ^= 1
			}
			resp, err := http.DefaultClient.Do(body.req)
			var status int
			var answer []byte
			if err == nil {
				status = resp.StatusCode
				answer, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			_, getErr := m.srv.S3(miniotest.RootUser, miniotest.RootPassword, "").GetObject(context.Background(),
				&s3.GetObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(key)})
			if tc.tamper {
				if err == nil && status == http.StatusOK || getErr == nil {
					t.Fatalf("a tampered chunk was stored (status %d, %v)", status, err)
				}
				return
			}
			if err != nil || status != http.StatusOK {
				t.Fatalf("streamed PUT through the proxy: %v, status %d: %s", err, status, answer)
			}
			got := getObject(t, m, key)
			if !bytes.Equal(got, data) {
				t.Fatalf("MinIO stored %d bytes, want the %d streamed", len(got), len(data))
			}
		})
	}
}

type streamed struct {
	req       *http.Request
	bodyBytes []byte
}

// streamedBody is a PUT of data as aws-chunked, signed with the
// placeholders at 64 KiB chunks, as a streaming SDK sends it.
func streamedBody(t *testing.T, m *minioRig, rawURL string, data []byte, mode string, trailers []string) streamed {
	t.Helper()
	const chunk = 64 << 10
	length := awssigtest.EncodedLength(data, chunk, trailers...)
	at := time.Now().UTC()
	r, err := http.NewRequestWithContext(context.Background(), "PUT", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = int64(length)
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	r.Header.Set("X-Amz-Content-Sha256", mode)
	if len(trailers) > 0 {
		r.Header.Set("X-Amz-Trailer", strings.SplitN(trailers[0], ":", 2)[0])
	}
	if err := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).SignHTTP(context.Background(), sdkCreds(m.placeholder), r, mode, "s3", miniotest.Region, at); err != nil {
		t.Fatal(err)
	}
	c := awssigtest.NewChunkSigner(m.placeholder.Secret.Reveal(), at.Format("20060102T150405Z"), at.Format("20060102")+"/"+miniotest.Region+"/s3/aws4_request", authField(t, r, "Signature"))
	b := c.Body(data, chunk, trailers...)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return streamed{req: r, bodyBytes: b}
}

func getObject(t *testing.T, m *minioRig, key string) []byte {
	t.Helper()
	out, err := m.srv.S3(miniotest.RootUser, miniotest.RootPassword, "").GetObject(context.Background(),
		&s3.GetObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s from minio: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// curl's own SigV4 signer (--aws-sigv4) signs fewer headers than the SDKs
// and in its own way; its GET of an object goes through too.
func TestMinIOCurl(t *testing.T) {
	m := newMinIORig(t)
	p, endpoint, _ := m.proxy(t, m.session, false)
	// The placeholders go in a config file, not on the command line.
	cfg := filepath.Join(t.TempDir(), "curlrc")
	if err := os.WriteFile(cfg, []byte("user = \""+m.placeholder.AccessKeyID+":"+m.placeholder.Secret.Reveal()+"\"\n"+
		"header = \"X-Amz-Security-Token: "+m.placeholder.SessionToken.Reveal()+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, m.clientEnv(t, ""), "curl", "-sS", "--fail-with-body", "-K", cfg, "--aws-sigv4", "aws:amz:"+miniotest.Region+":s3",
		endpoint+"/"+miniotest.Readable+"/"+miniotest.Object)
	if want := "hello from " + miniotest.Readable + "\n"; out != want {
		t.Fatalf("curl through the proxy got %q, want %q", out, want)
	}
	p.assertNoRefusals(t)
}
