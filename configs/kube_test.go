package configs

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

const (
	kubeProv = "providers:\n  kube:\n    kubeconfig: /etc/credbroker/kubeconfig\n"
	kubeRole = "roles:\n  r:\n    kube:\n      namespace: agents\n"
)

func TestValidateKube(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"kube role without provider", "roles:\n  r:\n    kube: " + marker + "\n      namespace: agents\n      role: pod-reader\n",
			"roles.r.kube", "providers.kube is not configured", "add a providers.kube block"},
		{"kubeconfig relative", "providers:\n  kube:\n    kubeconfig: kubeconfig " + marker + "\n" + kubeRole + "      role: x\n",
			"providers.kube.kubeconfig", "not an absolute path", "use an absolute path"},
		{"provider namespace", kubeProv + "    namespaces: [ok, Bad_NS] " + marker + "\n" + kubeRole + "      role: x\n",
			"providers.kube.namespaces[1]", `"Bad_NS" is not a valid namespace name`, "lower-case letters"},
		{"namespace missing", kubeProv + "roles:\n  r:\n    kube: " + marker + "\n      role: x\n",
			"roles.r.kube.namespace", "missing", "set the namespace"},
		{"namespace invalid", kubeProv + "roles:\n  r:\n    kube:\n      namespace: -agents " + marker + "\n      role: x\n",
			"roles.r.kube.namespace", `"-agents" is not a valid namespace name`, "lower-case letters"},
		{"no permission source", kubeProv + "roles:\n  r:\n    kube: " + marker + "\n      namespace: agents\n",
			"roles.r.kube", "0 permission sources are set", "keep exactly one of role, cluster_role and rules"},
		{"two permission sources", kubeProv + "roles:\n  r:\n    kube: " + marker + "\n      namespace: agents\n      role: a\n      cluster_role: b\n",
			"roles.r.kube", "2 permission sources are set (role, cluster_role)", "keep exactly one"},
		{"cluster_wide without cluster_role", kubeProv + kubeRole + "      role: a\n      cluster_wide: true " + marker + "\n",
			"roles.r.kube.cluster_wide", "needs a cluster_role", "set cluster_role"},
		{"role name", kubeProv + kubeRole + "      role: a/b " + marker + "\n",
			"roles.r.kube.role", `"a/b" is not a valid Role or ClusterRole name`, "kubectl get"},
		{"token_ttl below API minimum", kubeProv + kubeRole + "      role: a\n      token_ttl: 5m " + marker + "\n",
			"roles.r.kube.token_ttl", "5m is outside the 10m..12h range", "TokenRequest minimum"},
		{"rule without verbs", kubeProv + kubeRole + "      rules:\n        - resources: [pods] " + marker + "\n",
			"roles.r.kube.rules[0].verbs", "missing", "[get, list, watch]"},
		{"rule verb", kubeProv + kubeRole + "      rules:\n        - resources: [pods]\n          verbs: [get, \"LIST ALL\"] " + marker + "\n",
			"roles.r.kube.rules[0].verbs[1]", `"LIST ALL" is not a valid entry`, "as Kubernetes RBAC does"},
		{"empty audience", kubeProv + kubeRole + "      role: a\n      audiences: [\"\"] " + marker + "\n",
			"roles.r.kube.audiences[0]", "empty audience", "remove the empty entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			t.Setenv("KUBECONFIG", "")
			wantOneError(t, tt.yaml, tt.path, tt.msg, tt.hint)
		})
	}
}

func TestKubeDefaults(t *testing.T) {
	dir := isolateEnv(t)
	t.Setenv("KUBECONFIG", "")
	c, err := Parse("c.yaml", []byte("providers:\n  kube: {}\nroles:\n  r:\n    kube:\n      namespace: agents\n"+
		"      rules:\n        - resources: [pods]\n          verbs: [list]\n  s:\n    kube:\n      namespace: tools\n      cluster_role: view\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "home", ".kube", "config"); c.Providers.Kube.Kubeconfig != want {
		t.Errorf("kubeconfig = %q, want %q", c.Providers.Kube.Kubeconfig, want)
	}
	r := c.Roles["r"].Kube
	if r.TokenTTL.D() != time.Hour || !reflect.DeepEqual(r.Rules[0].APIGroups, []string{""}) {
		t.Errorf("role defaults = %+v", r)
	}
	if got := c.KubeNamespaces(); !reflect.DeepEqual(got, []string{"agents", "tools"}) {
		t.Errorf("namespaces = %v", got)
	}
	if got := c.Roles["s"].ProviderNames(); !reflect.DeepEqual(got, []string{"kube"}) {
		t.Errorf("provider names = %v", got)
	}

	t.Setenv("KUBECONFIG", "/etc/k/one")
	c, err = Parse("c.yaml", []byte("providers:\n  kube:\n    namespaces: [old]\n"+kubeRole+"      role: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Providers.Kube.Kubeconfig != "/etc/k/one" || !reflect.DeepEqual(c.KubeNamespaces(), []string{"agents", "old"}) {
		t.Errorf("kubeconfig %q, namespaces %v", c.Providers.Kube.Kubeconfig, c.KubeNamespaces())
	}
}
