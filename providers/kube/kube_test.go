package kube_test

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/providertest"
)

// TestConformance runs the shared provider suite against the real
// kube-apiserver: Use lists pods in the role's namespace; Denied shows
// secrets, another namespace, deleting and writing are refused (403);
// Rejected polls until the token gets 401.
func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		e := newEnv(t)
		return providertest.Harness{
			Provider: e.prov,
			Role:     podReaderRole(e.ns),
			Use: func(ctx context.Context, g providers.Grant) error {
				return e.listPods(ctx, t, g, e.ns)
			},
			Denied: func(ctx context.Context, g providers.Grant) error {
				c := e.client(t, g)
				checks := map[string]error{}
				_, checks["list secrets"] = c.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{})
				_, checks["list pods in default"] = c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
				checks["delete a pod"] = c.CoreV1().Pods(e.ns).Delete(ctx, "any", metav1.DeleteOptions{})
				_, checks["list service accounts"] = c.CoreV1().ServiceAccounts(e.ns).List(ctx, metav1.ListOptions{})
				for what, err := range checks {
					if !apierrors.IsForbidden(err) {
						return fmt.Errorf("%s with a session token: got %v, want 403", what, err)
					}
				}
				return nil
			},
			Rejected: func(ctx context.Context, g providers.Grant) error {
				d, err := e.waitRejected(ctx, t, g)
				if err == nil {
					t.Logf("token rejected %s after revocation", d.Round(100_000_000))
				}
				return err
			},
		}
	})
}
