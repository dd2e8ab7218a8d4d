package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
)

// BenchmarkRevokeAllMixed: revoke --all with 1,000 live sessions of role
// agent-full, each a Vault token and AWS keys from a real MinIO's STS
// (revoked there by one revoke-tokens call). As BenchmarkRevokeAll, with a
// sample of each server's credentials polled: ms-rejected-vault (session
// tokens, lookup-self), ms-rejected-aws (session keys, an S3 GetObject
// answered 403), ms-rejected the later of the two; ms-returned is the
// slower provider's revoke-all call.
func BenchmarkRevokeAllMixed(b *testing.B) {
	const n = 1000
	b.Run(fmt.Sprint(n), func(b *testing.B) {
		h := newHarness(b, withMinIO())
		ctx := context.Background()
		var returned, vaultRej, awsRej, rejected time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			_ = h.b.ClearIncident(ctx, h.caller) // none on the first round
			sis := startMany(b, h, n, "agent-full")
			vc, ac := vaultChecks(h, tokens(h, sis)), s3Checks(h, sis)
			wv, wa := watchRejection(b, vc), watchRejection(b, ac)
			wv.begin()
			wa.begin()
			b.StartTimer()
			rep, err := h.b.RevokeAll(ctx, h.caller, "bench")
			b.StopTimer()
			if err != nil || !rep.Complete {
				b.Fatalf("revoke all: %+v %v", rep, err)
			}
			v, a := wv.wait(), wa.wait()
			vaultRej, awsRej, rejected = vaultRej+v, awsRej+a, rejected+max(v, a)
			returned += rep.RevokedIn
			assertAllRejected(b, append(vc, ac...))
			b.StartTimer()
		}
		b.ReportMetric(msPer(returned, b.N), "ms-returned")
		b.ReportMetric(msPer(rejected, b.N), "ms-rejected")
		b.ReportMetric(msPer(vaultRej, b.N), "ms-rejected-vault")
		b.ReportMetric(msPer(awsRej, b.N), "ms-rejected-aws")
	})
}

// s3Checks returns a check per session's AWS keys: an S3 GetObject of the
// readable object, rejected when MinIO answers 403.
func s3Checks(h *harness, sis []broker.SessionInfo) []check {
	checks := make([]check, len(sis))
	for i, si := range sis {
		c := h.minio.S3(h.awsCreds(si))
		checks[i] = func() (bool, error) { return s3Accepts(c) }
	}
	return checks
}

func s3Accepts(c *s3.Client) (bool, error) {
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(miniotest.Object)})
	if err == nil {
		out.Body.Close()
		return true, nil
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 403 {
		return false, nil
	}
	return false, fmt.Errorf("s3 get object: %w", err)
}
