# Policy for sessions of role agent-dev: read and write its KV v2 area and
# issue short-lived certificates (a lease-producing dynamic secret).
path "secret/data/agent/dev/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/data/shared/*" {
  capabilities = ["read"]
}
path "pki/issue/agent-dev" {
  capabilities = ["update"]
}
