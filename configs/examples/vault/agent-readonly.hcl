# Policy for sessions of role agent-readonly: read its own KV v2 secrets only.
path "secret/data/agent/readonly/*" {
  capabilities = ["read"]
}
path "secret/data/shared/*" {
  capabilities = ["read"]
}
