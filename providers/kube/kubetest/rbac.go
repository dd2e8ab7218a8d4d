package kubetest

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// createRBAC creates a Role, ClusterRole or one of their bindings.
func createRBAC(ctx context.Context, c kubernetes.Interface, obj runtime.Object) error {
	o := metav1.CreateOptions{}
	var err error
	switch v := obj.(type) {
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(v.Namespace).Create(ctx, v, o)
	case *rbacv1.ClusterRole:
		_, err = c.RbacV1().ClusterRoles().Create(ctx, v, o)
	case *rbacv1.RoleBinding:
		_, err = c.RbacV1().RoleBindings(v.Namespace).Create(ctx, v, o)
	case *rbacv1.ClusterRoleBinding:
		_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, v, o)
	default:
		return fmt.Errorf("kubetest: cannot create a %T", obj)
	}
	return err
}

// PodReader is the Role the tests bind sessions to: read pods and
// configmaps, nothing else.
func PodReader(ns string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}},
		},
	}
}

// PodOperator reads pods and their logs, execs into them and forwards
// their ports: what an agent debugging a workload needs, and what the
// kubelet stand-in (StartKubelet) serves.
func PodOperator(ns string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-operator", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
			// WebSocket upgrades arrive as GET; SPDY ones as POST (create).
			{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/portforward"}, Verbs: []string{"get", "create"}},
		},
	}
}

// CreateRole creates r as admin.
func (s *Server) CreateRole(ctx context.Context, r *rbacv1.Role) error {
	_, err := s.Admin.RbacV1().Roles(r.Namespace).Create(ctx, r, metav1.CreateOptions{})
	return err
}

// SecretReader is a Role no session should get: tests use it to show the
// broker cannot bind Roles outside its bind list.
func SecretReader(ns string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "secret-reader", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}},
	}
}

// PodViewer is a plain ClusterRole reading pods. (The built-in "view" is
// aggregated by kube-controller-manager, which the test server does not
// run, so it is empty here.)
func PodViewer() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "credbroker-test-pod-viewer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}
}

// EnsureClusterRole creates r as admin unless it exists (the server is
// shared by a package's tests).
func (s *Server) EnsureClusterRole(ctx context.Context, r *rbacv1.ClusterRole) error {
	_, err := s.Admin.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
