#!/usr/bin/env bash
# Prepares a Vault server for credbroker's example roles: the policies, the
# token role that caps session tokens, example KV data and a PKI role whose
# certificates carry leases. Needs VAULT_ADDR and an admin VAULT_TOKEN.
# The integration tests do the same through the Go API (vaulttest.Seed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vault=${VAULT_BIN:-vault}

"$vault" policy write agent-readonly "$here/agent-readonly.hcl" >/dev/null
"$vault" policy write agent-dev "$here/agent-dev.hcl" >/dev/null
# Session tokens are created through this role: allowed_policies caps what any
# session may get, whatever the broker's config says.
"$vault" write auth/token/roles/credbroker-session \
  allowed_policies=agent-readonly,agent-dev orphan=false renewable=true \
  token_explicit_max_ttl=12h >/dev/null
"$vault" kv put -mount=secret agent/readonly/config region=eu-west-1 feature_flags=read-only >/dev/null
"$vault" kv put -mount=secret agent/dev/config db_host=db.internal deploy_env=staging >/dev/null
"$vault" kv put -mount=secret shared/build ci_cache=s3://example-cache >/dev/null
if ! "$vault" secrets list -format=json | grep -q '"pki/"'; then
  "$vault" secrets enable pki >/dev/null
  "$vault" secrets tune -max-lease-ttl=24h pki >/dev/null
  "$vault" write -field=certificate pki/root/generate/internal common_name=credbroker-demo-ca ttl=24h >/dev/null
fi
"$vault" write pki/roles/agent-dev allowed_domains=credbroker.local allow_subdomains=true \
  generate_lease=true max_ttl=2h >/dev/null
echo "vault prepared: policies agent-readonly, agent-dev; token role credbroker-session; pki role agent-dev"
