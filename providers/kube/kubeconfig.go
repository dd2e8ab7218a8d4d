package kube

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/credbroker/credbroker/internal/secret"
)

const kubeContext = "credbroker"

// proxyCAFileRef is the session CA certificate (the broker's
// proxy.CAFile) relative to kube/config.
const proxyCAFileRef = "../proxy/ca.pem"

// renderKubeconfig writes the session's kube/config: the cluster's address
// and CA, the role's namespace as the default, and a user that reads
// tokenFile "token". The path is relative on purpose: client-go resolves
// relative paths in a kubeconfig against the kubeconfig file's directory
// (clientcmd.ResolveLocalPaths), so it works wherever the session dir is
// mounted and never points outside it. No exec plugin, no other file.
//
// With proxy delivery the token is a placeholder and the cluster is
// trusted through the session's CA (ProxyCAFile, relative in the same
// way): the egress gateway terminates TLS for the API server, swaps the
// token and verifies the real server against its CA itself.
func renderKubeconfig(c Cluster, namespace, user string, proxy bool) (secret.Value, error) {
	cfg := clientcmdapi.NewConfig()
	cl := &clientcmdapi.Cluster{
		Server:                   c.Server,
		CertificateAuthorityData: c.CAData,
		TLSServerName:            c.ServerName,
		InsecureSkipTLSVerify:    c.Insecure,
	}
	if proxy {
		cl = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthority: proxyCAFileRef}
	}
	cfg.Clusters[kubeContext] = cl
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{TokenFile: tokenFileRef}
	cfg.Contexts[kubeContext] = &clientcmdapi.Context{Cluster: kubeContext, AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = kubeContext
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return secret.Value{}, fmt.Errorf("kube: render kubeconfig: %w", err)
	}
	// Not a secret (the token is in its own file), but the session dir
	// carries every file as a secret.Value.
	return secret.FromBytes(b), nil
}
