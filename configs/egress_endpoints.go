package configs

import (
	"fmt"
	"net"
	"net/url"
	"os"

	"go.yaml.in/yaml/v3"
)

// EgressEndpoint is a provider endpoint that a role's sessions may always
// reach through the gateway, without listing it, because the role mints
// credentials for it.
type EgressEndpoint struct {
	// Provider is the provider's name (vault, aws, kube).
	Provider string
	// Source says where the endpoint comes from, e.g.
	// "providers.vault.address".
	Source string
	// Rule matches the endpoint's host and port.
	Rule EgressRule
}

// EgressEndpoints lists the endpoints of the providers role uses: the Vault
// address, the STS and S3 endpoints, the Kubernetes API server (read from
// the broker's kubeconfig).
func (c *Config) EgressEndpoints(role Role) ([]EgressEndpoint, error) {
	var out []EgressEndpoint
	add := func(provider, source, raw string) error {
		r, err := endpointRule(raw)
		if err != nil {
			return fmt.Errorf("egress: %s: %w", source, err)
		}
		out = append(out, EgressEndpoint{Provider: provider, Source: source, Rule: r})
		return nil
	}
	if v := c.Providers.Vault; role.Vault != nil && v != nil {
		if err := add("vault", "providers.vault.address", v.Address); err != nil {
			return nil, err
		}
	}
	if a := c.Providers.AWS; role.AWS != nil && a != nil {
		for _, e := range awsEndpoints(a) {
			if err := add("aws", e[0], e[1]); err != nil {
				return nil, err
			}
		}
	}
	if k := c.Providers.Kube; role.Kube != nil && k != nil {
		server, err := kubeServer(k)
		if err != nil {
			return nil, fmt.Errorf("egress: the kube API server: %w", err)
		}
		if err := add("kube", "providers.kube.kubeconfig", server); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// awsEndpoints are [source, URL or rule] pairs: the configured endpoints,
// or AWS's regional STS and S3 names.
func awsEndpoints(a *AWSProvider) [][2]string {
	var out [][2]string
	if a.STSEndpoint != "" {
		out = append(out, [2]string{"providers.aws.sts_endpoint", a.STSEndpoint})
	} else {
		out = append(out,
			[2]string{"providers.aws.region", "sts." + a.Region + ".amazonaws.com:443"},
			[2]string{"providers.aws.region", "sts.amazonaws.com:443"})
	}
	if a.EndpointURL != "" {
		out = append(out, [2]string{"providers.aws.endpoint_url", a.EndpointURL})
	} else {
		out = append(out,
			[2]string{"providers.aws.region", "s3." + a.Region + ".amazonaws.com:443"},
			[2]string{"providers.aws.region", "*.s3." + a.Region + ".amazonaws.com:443"},
			[2]string{"providers.aws.region", "s3.amazonaws.com:443"},
			[2]string{"providers.aws.region", "*.s3.amazonaws.com:443"})
	}
	return out
}

// endpointRule turns a URL (or a host:port rule) into an exact rule.
func endpointRule(raw string) (EgressRule, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ParseEgressRule(raw)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if port == "" {
		return EgressRule{}, fmt.Errorf("%q has no port and no http(s) scheme", raw)
	}
	r, err := ParseEgressRule(net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return r, fmt.Errorf("%q: %w", raw, err)
	}
	return r, nil
}

// kubeconfig is the part of a kubeconfig that names the API server.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Contexts       []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	Clusters []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
}

// kubeServer reads the API server URL of the broker's kubeconfig context.
func kubeServer(k *KubeProvider) (string, error) {
	b, err := os.ReadFile(k.Kubeconfig)
	if err != nil {
		return "", fmt.Errorf("read providers.kube.kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return "", fmt.Errorf("parse %s: %w", k.Kubeconfig, err)
	}
	ctxName := k.Context
	if ctxName == "" {
		ctxName = kc.CurrentContext
	}
	cluster := ""
	for _, c := range kc.Contexts {
		if c.Name == ctxName {
			cluster = c.Context.Cluster
		}
	}
	for _, c := range kc.Clusters {
		if c.Name == cluster && c.Cluster.Server != "" {
			return c.Cluster.Server, nil
		}
	}
	return "", fmt.Errorf("%s: context %q names no cluster with a server", k.Kubeconfig, ctxName)
}
