package broker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/hashicorp/vault/api"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// BenchmarkSessionVsDirect compares, on one set of real servers (Vault,
// MinIO, kube-apiserver + etcd, each behind the harness's TCP proxy), a
// broker session start with what the same credentials cost when asked for
// directly, one provider at a time, on warm clients:
//
//   - broker/agent-all: Vault, AWS and Kubernetes in one session (the three
//     providers are asked in parallel; intent, leases, tmpfs dir, audit);
//   - broker/agent-s3: AWS only;
//   - direct/vault: child token through the token role + one KV v2 read
//     with it (what the Vault provider asks);
//   - direct/aws: one AssumeRole with the role's session policy
//     (aws-sdk-go-v2, as the AWS provider calls it);
//   - direct/kube: ServiceAccount, RoleBinding and TokenRequest
//     (the three calls the Kubernetes provider makes) on a client without
//     client-go's rate limit;
//   - direct/all-parallel: direct/vault, direct/aws and direct/kube at
//     once (what a three-provider session asks, without the broker);
//   - direct/kube-tokenrequest: the TokenRequest alone, for an existing
//     ServiceAccount;
//   - direct/kube-default-qps: the four calls on a client-go client with
//     its default rate limit (5 requests/s, burst 10), as the broker's
//     kube provider builds it from the kubeconfig.
//
// Sessions and objects are cleaned up outside the timer.
func BenchmarkSessionVsDirect(b *testing.B) {
	h := newHarness(b, withMinIO(), withKube())
	ctx := context.Background()
	for _, role := range []string{"agent-all", "agent-s3"} {
		b.Run("broker/"+role, func(b *testing.B) {
			var ids []string
			for b.Loop() {
				si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: role})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, si.ID)
			}
			for _, id := range ids {
				if _, err := h.b.EndSession(ctx, h.caller, id, "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	vc, err := api.NewClient(&api.Config{Address: "http://" + h.proxy.Addr})
	if err != nil {
		b.Fatal(err)
	}
	vc.SetToken(vaulttest.RootToken)
	vaultDirect := func(b *testing.B) {
		sec, err := vc.Auth().Token().CreateWithRole(&api.TokenCreateRequest{Policies: []string{"agent-readonly"}, TTL: "10m"}, vaulttest.TokenRole)
		if err != nil {
			b.Error(err)
			return
		}
		tc, _ := vc.Clone()
		tc.SetToken(sec.Auth.ClientToken)
		if s, err := tc.Logical().Read("secret/data/agent/readonly/config"); err != nil || s == nil {
			b.Errorf("kv read: %v", err)
		}
	}
	b.Run("direct/vault", func(b *testing.B) {
		for b.Loop() {
			vaultDirect(b)
		}
	})

	sc := sts.New(sts.Options{Region: miniotest.Region, BaseEndpoint: aws.String("http://" + h.minioProxy.Addr),
		Credentials: credentials.NewStaticCredentialsProvider(miniotest.RootUser, miniotest.RootPassword, "")})
	in := &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::000000000000:role/agent-s3"), RoleSessionName: aws.String("bench"),
		DurationSeconds: aws.Int32(3600), Policy: aws.String(miniotest.ReadOnlyPolicy)}
	b.Run("direct/aws", func(b *testing.B) {
		for b.Loop() {
			if _, err := sc.AssumeRole(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})

	rc, err := clientcmd.BuildConfigFromFlags("", h.kube.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	throttled := kubernetes.NewForConfigOrDie(rc)
	rc.QPS, rc.Burst = -1, 0 // no client-side rate limit
	kc := kubernetes.NewForConfigOrDie(rc)
	for _, c := range []struct {
		name string
		kc   kubernetes.Interface
	}{{"direct/kube", kc}, {"direct/kube-default-qps", throttled}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				kubeMintDirect(b, c.kc, h.kube.NS, fmt.Sprintf("bench-%s-%d", strings.TrimPrefix(c.name, "direct/"), i))
			}
			kubeCleanupDirect(b, kc, h.kube.NS)
		})
	}
	// The floor for a three-provider session on these servers: the three
	// providers' direct calls at once, as the broker asks them.
	b.Run("direct/all-parallel", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			var wg sync.WaitGroup
			wg.Go(func() { vaultDirect(b) })
			wg.Go(func() {
				if _, err := sc.AssumeRole(ctx, in); err != nil {
					b.Error(err)
				}
			})
			wg.Go(func() { kubeMintDirect(b, kc, h.kube.NS, fmt.Sprintf("bench-all-%d", i)) })
			wg.Wait()
		}
		kubeCleanupDirect(b, kc, h.kube.NS)
	})
	b.Run("direct/kube-tokenrequest", func(b *testing.B) {
		kubeMintDirect(b, kc, h.kube.NS, "bench-tr")
		exp := int64(3600)
		for b.Loop() {
			if _, err := kc.CoreV1().ServiceAccounts(h.kube.NS).CreateToken(ctx, "bench-tr",
				&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		kubeCleanupDirect(b, kc, h.kube.NS)
	})
}

const benchLabel = "credbroker.bench/direct"

// kubeMintDirect makes the Kubernetes provider's three calls for name
// (ServiceAccount, RoleBinding, TokenRequest; it creates no Secret). It
// may run off the benchmark's goroutine, so it reports with Error.
func kubeMintDirect(b *testing.B, kc kubernetes.Interface, ns, name string) {
	ctx := context.Background()
	meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{benchLabel: "1"}}
	if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta, AutomountServiceAccountToken: new(false)}, metav1.CreateOptions{}); err != nil {
		b.Error(err)
		return
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"}
	subj := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}
	if _, err := kc.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subj}, metav1.CreateOptions{}); err != nil {
		b.Error(err)
		return
	}
	exp := int64(3600)
	if _, err := kc.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
	}}, metav1.CreateOptions{}); err != nil {
		b.Error(err)
		return
	}
}

// kubeCleanupDirect deletes what kubeMintDirect created in ns.
func kubeCleanupDirect(b *testing.B, kc kubernetes.Interface, ns string) {
	ctx, opts := context.Background(), metav1.ListOptions{LabelSelector: benchLabel}
	for _, err := range []error{
		kc.RbacV1().RoleBindings(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, opts),
		kc.CoreV1().ServiceAccounts(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, opts),
	} {
		if err != nil {
			b.Fatal(err)
		}
	}
}
