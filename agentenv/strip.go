package agentenv

import (
	"path"
	"strings"
)

// DefaultStrip lists the host variables the exec wrapper removes before
// adding the session's own: anything that could point the agent at the
// user's long-lived credentials or at a more powerful authority than its
// session grants. Entries are exact names or path.Match globs, compared
// with the name upper-cased (so aws_profile is caught too).
//
// Decisions:
//   - Whole families go, as aws-vault does for AWS_*: AWS_*, VAULT_*,
//     AZURE_*, CREDBROKER_* (the host's broker socket is authority too).
//     The session env re-adds what the agent should see (AWS_CONFIG_FILE,
//     AWS_PROFILE, VAULT_ADDR, VAULT_TOKEN, KUBECONFIG...).
//   - Name patterns catch tokens and passwords of tools not listed:
//     *TOKEN (GH_TOKEN, NPM_TOKEN, HF_TOKEN, CI_JOB_TOKEN), *_TOKEN_FILE,
//     *SECRET*, *PASSWORD*, *PASSWD*, *_PWD (MYSQL_PWD; not PWD/OLDPWD),
//     *API_KEY*, *ACCESS_KEY*, *PRIVATE_KEY*, *CREDENTIAL*. They also remove
//     the agent's own model API key (ANTHROPIC_API_KEY, OPENAI_API_KEY):
//     that is deliberate. Put it in the role's env, or exempt it with a
//     "!NAME" entry (see BuildEnv) when the host copy is really meant for
//     the sandbox.
//   - Paths to credential stores and agents: KUBECONFIG,
//     GOOGLE_APPLICATION_CREDENTIALS, CLOUDSDK_CONFIG, DOCKER_CONFIG,
//     NETRC, SSH_AUTH_SOCK, GPG_AGENT_INFO, GIT_ASKPASS, SSH_ASKPASS, and
//     DOCKER_HOST/CONTAINER_HOST (a container engine socket is root on the
//     host).
//   - Kept: PATH, HOME, LANG, proxies, TOKENIZERS_PARALLELISM (no _TOKEN
//     suffix) and the like. A proxy URL with a password in it is not
//     detected.
var DefaultStrip = []string{
	"AWS_*", "VAULT_*", "AZURE_*", "CREDBROKER_*",
	"ARM_CLIENT_*", "ARM_OIDC_*", "ARM_ACCESS_KEY",
	"KUBECONFIG",
	"GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN",
	"GOOGLE_GHA_CREDS_PATH", "CLOUDSDK_CONFIG", "CLOUDSDK_AUTH_*",
	"GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN",
	"DOCKER_CONFIG", "DOCKER_AUTH_CONFIG", "DOCKER_HOST", "CONTAINER_HOST",
	"NETRC", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "GIT_ASKPASS", "SSH_ASKPASS",
	"*TOKEN", "*_TOKEN_FILE", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*_PWD",
	"*API_KEY*", "*ACCESS_KEY*", "*PRIVATE_KEY*", "*CREDENTIAL*",
}

// matcher applies a strip list. An entry starting with "!" exempts the
// names it matches, whatever other entries say, so a caller can write
// append(DefaultStrip, "!ANTHROPIC_API_KEY").
type matcher struct{ strip, keep []string }

func newMatcher(list []string) matcher {
	var m matcher
	for _, e := range list {
		if k, ok := strings.CutPrefix(e, "!"); ok {
			m.keep = append(m.keep, strings.ToUpper(k))
		} else {
			m.strip = append(m.strip, strings.ToUpper(e))
		}
	}
	return m
}

func (m matcher) match(name string) bool {
	n := strings.ToUpper(name)
	return anyMatch(m.strip, n) && !anyMatch(m.keep, n)
}

func anyMatch(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, name); ok || (err != nil && p == name) {
			return true
		}
	}
	return false
}
