package proxy

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
)

// BenchmarkProxyS3 moves a 200 MB object up (PutObject) and down
// (GetObject) with the AWS SDK against a real MinIO: direct with the real
// keys, and through a session's egress gateway with proxy delivery (the
// SDK signs with the placeholder keys; the gateway verifies and re-signs
// every request). MB/s compares them.
func BenchmarkProxyS3(b *testing.B) {
	const size = 200 << 20
	m := miniotest.Start(b)
	u, err := url.Parse(m.URL)
	if err != nil {
		b.Fatal(err)
	}
	named := "http://minio.test:" + u.Port()
	role := configs.Role{Name: "r", Delivery: configs.DeliveryProxy, AWS: &configs.AWSRole{RoleARN: "arn:aws:iam::1:role/r"}, Egress: &configs.Egress{}}
	cfg := &configs.Config{
		Broker:    configs.Broker{Egress: configs.BrokerEgress{Hosts: map[string]string{"minio.test": "127.0.0.1"}}},
		Providers: configs.Providers{AWS: &configs.AWSProvider{Region: miniotest.Region, STSEndpoint: named, EndpointURL: named}},
		Roles:     map[string]configs.Role{"r": role},
	}
	d, err := New(Options{Config: cfg, RootsPEM: []byte{}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := d.Open("s-bench", role, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	g, err := s.Deliver("aws", providers.Grant{Secrets: []providers.IssuedSecret{
		{Value: secret.New(miniotest.RootUser), What: "aws access key id", Name: providers.SecretAWSAccessKeyID, Public: true},
		{Value: secret.New(miniotest.RootPassword), What: "aws secret access key", Name: providers.SecretAWSSecretKey},
	}})
	if err != nil {
		b.Fatal(err)
	}
	phID, phSecret := g.Secrets[0].Value.Reveal(), g.Secrets[1].Value.Reveal()
	res := &egress.Resolver{Hosts: cfg.EgressHosts(), Lookup: func(context.Context, string) ([]netip.Addr, error) {
		b.Fatal("DNS lookup in a loopback benchmark")
		return nil, nil
	}}
	p, err := egress.NewPolicy(cfg, "r", res)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cbs3")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "g.sock")
	gw, err := egress.Listen(sock, egress.Config{Session: "s-bench", Role: "r", UID: os.Geteuid(), Policy: p, Intercept: s})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gw.Close() })
	viaGateway := s3.New(s3.Options{
		Region: miniotest.Region, BaseEndpoint: aws.String(named), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(phID, phSecret, ""),
		HTTPClient: &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}},
	})
	clients := map[string]*s3.Client{"direct": m.S3(miniotest.RootUser, miniotest.RootPassword, ""), "proxy": viaGateway}
	// Random bytes: a payload repeating text that shares a prefix with a
	// real value (MinIO's root user here) would measure that coincidence.
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(payload)
	ctx := context.Background()
	for _, name := range []string{"direct", "proxy"} {
		c := clients[name]
		key := "bench-" + name
		b.Run("put/"+name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(key),
					Body: bytes.NewReader(payload), ContentLength: aws.Int64(size)}); err != nil {
					b.Fatal(shortS3(err))
				}
			}
		})
		b.Run("get/"+name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(key)})
				if err != nil {
					b.Fatal(shortS3(err))
				}
				n, _ := io.Copy(io.Discard, out.Body)
				out.Body.Close()
				if n != size {
					b.Fatalf("got %d bytes", n)
				}
			}
		})
	}
}

// shortS3 keeps an SDK error to its first line.
func shortS3(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
