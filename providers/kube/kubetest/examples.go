package kubetest

import (
	"os"
	"path/filepath"
	"runtime"
)

// BrokerRBACFile is configs/examples/kube/broker-rbac.yaml in this module:
// the broker's minimal RBAC that docs/kubernetes.md describes.
func BrokerRBACFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "configs", "examples", "kube", "broker-rbac.yaml")
}

// BrokerRBAC returns the broker's minimal RBAC manifest.
func BrokerRBAC() (string, error) {
	b, err := os.ReadFile(BrokerRBACFile())
	return string(b), err
}
