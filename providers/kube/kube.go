// Package kube is the Kubernetes provider: a ServiceAccount per session,
// bound to the role's Role or ClusterRole (or a broker-owned Role made from
// inline rules), with short-lived TokenRequest tokens, delivered as a
// kubeconfig whose user reads a token file. The broker never creates,
// reads or deletes a Secret.
//
// Deleting the ServiceAccount invalidates every token of the session; kube-apiserver may keep accepting
// a token it checked successfully in the last 10 seconds (its token cache),
// see docs/kubernetes.md.
package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/hostsdial"
	"github.com/credbroker/credbroker/providers"
)

// Name is the provider name used in lease ids, config and audit records.
const Name = "kube"

// KindServiceAccount is the one lease kind: a session's ServiceAccount
// together with its binding.
const KindServiceAccount = "serviceaccount"

// Files the provider writes into the session dir, and the env that points
// clients at them.
const (
	ConfigFile = "kube/config"
	TokenFile  = "kube/token"
	// tokenFileRef is the token path as written inside kube/config:
	// relative, so client-go resolves it against the kubeconfig's own
	// directory wherever the session dir is mounted.
	tokenFileRef  = "token"
	envKubeconfig = "KUBECONFIG"
)

// Labels and annotations on every object the provider creates. The session
// label lets FindOrphans find a crashed mint and RevokeAll select every
// session object with one DeleteCollection per namespace.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedBy       = "credbroker"
	LabelSession    = "credbroker.io/session"
	LabelRole       = "credbroker.io/role"
	LabelInline     = "credbroker.io/inline-rules"
	annotExpires    = "credbroker.io/session-expires-at"
	objectPrefix    = "credbroker-"
	inlineRolePrefx = "credbroker-role-"
)

// sessionSelector selects every per-session object the broker created, and
// nothing else (inline-rule Roles carry no session label).
var sessionSelector = LabelManagedBy + "=" + ManagedBy + "," + LabelSession

// Provider mints Kubernetes service-account tokens.
type Provider struct {
	client     kubernetes.Interface
	cluster    Cluster
	namespaces []string
	roles      map[string]configs.Role
	log        *slog.Logger
	now        func() time.Time
	checks     roleChecks // named Roles found, and when (rolecache.go)
}

// Cluster is what the session's kubeconfig needs to reach the API server;
// it never holds a credential.
type Cluster struct {
	Server     string
	CAData     []byte
	ServerName string
	Insecure   bool
}

var _ providers.Provider = (*Provider)(nil)

// New loads the broker's kubeconfig and builds the provider for the
// configured roles. It does not contact the cluster (Check does), so an
// unreachable cluster fails minting, not the daemon's start.
//
// A non-nil dial (at most one) is the client's dialer: the daemon passes
// one that maps broker.egress.hosts names.
func New(cfg configs.KubeProvider, roles map[string]configs.Role, log *slog.Logger, dial ...hostsdial.DialFunc) (*Provider, error) {
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: cfg.Context},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: load kubeconfig %s (context %q): %w", cfg.Kubeconfig, cfg.Context, err)
	}
	cluster, err := clusterOf(rc)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 30 * time.Second
	if len(dial) > 0 && dial[0] != nil {
		rc.Dial = dial[0]
	}
	// No client-side throttling: client-go's default (5 requests/s, burst
	// 10) paced session starts (4 calls) and ends (3) to about 0.6 s each
	// once the burst was spent. The API server's priority and fairness
	// (on by default since v1.20) limits the broker instead, as kubectl
	// does when the server has it.
	rc.QPS = -1
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	return NewWithClient(client, cluster, cfg, roles, log), nil
}

// NewWithClient builds the provider around an existing client.
func NewWithClient(client kubernetes.Interface, cluster Cluster, cfg configs.KubeProvider, roles map[string]configs.Role, log *slog.Logger) *Provider {
	if log == nil {
		log = slog.Default()
	}
	c := configs.Config{Providers: configs.Providers{Kube: &cfg}, Roles: roles}
	kr := map[string]configs.Role{}
	for name, r := range roles {
		if r.Kube != nil {
			r.Name = name
			kr[name] = r
		}
	}
	return &Provider{
		client: client, cluster: cluster, namespaces: c.KubeNamespaces(), roles: kr,
		log: log.With("provider", Name), now: time.Now,
	}
}

// clusterOf takes the API server's address and CA from the broker's own
// client config; the broker's credentials stay behind.
func clusterOf(rc *rest.Config) (Cluster, error) {
	c := Cluster{Server: rc.Host, CAData: rc.CAData, ServerName: rc.ServerName, Insecure: rc.Insecure}
	if len(c.CAData) == 0 && rc.CAFile != "" {
		b, err := os.ReadFile(rc.CAFile)
		if err != nil {
			return Cluster{}, fmt.Errorf("kube: read the cluster CA %s: %w", rc.CAFile, err)
		}
		c.CAData = b
	}
	return c, nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Namespaces returns the namespaces the provider manages, sorted.
func (p *Provider) Namespaces() []string { return slices.Clone(p.namespaces) }

// clusterWide reports whether any configured role uses a
// ClusterRoleBinding, so revocation must sweep those too.
func (p *Provider) clusterWide() bool {
	for _, r := range p.roles {
		if r.Kube.ClusterWide {
			return true
		}
	}
	return false
}

// objectName is the name of a session's ServiceAccount and binding: the cluster's audit log then names the session.
func objectName(sessionID string) (string, error) {
	name := objectPrefix + sessionID
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return "", fmt.Errorf("session id %q cannot name a Kubernetes object: %s", sessionID, errs[0])
	}
	if errs := validation.IsValidLabelValue(sessionID); len(errs) > 0 {
		return "", fmt.Errorf("session id %q cannot be a label value: %s", sessionID, errs[0])
	}
	return name, nil
}

// describe shortens an API error to its status and message. API errors
// never carry a token: the only request that returns one (TokenRequest)
// fails without a body that echoes it.
func describe(err error) error {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		return fmt.Errorf("kubernetes answered %d %s: %s", st.Code, st.Reason, st.Message)
	}
	return err
}

// ignoreNotFound turns NotFound into nil: revocation is idempotent.
func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
