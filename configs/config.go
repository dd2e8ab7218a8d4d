// Package configs defines credbroker's configuration: the broker's own
// settings, each provider's connection block and the roles sessions are
// started for. It loads YAML, validates it and reports errors with file,
// line, field and the fix.
package configs

import "time"

// Config is the whole configuration file.
type Config struct {
	// Path is the file the config was loaded from (not part of the YAML).
	Path string `yaml:"-"`

	Broker    Broker          `yaml:"broker"`
	Store     Store           `yaml:"store"`
	Providers Providers       `yaml:"providers"`
	Roles     map[string]Role `yaml:"roles"`
}

// Broker holds the daemon's own settings. Empty paths get defaults from the
// XDG base directories (see ApplyDefaults).
type Broker struct {
	// Socket is the Unix socket the daemon listens on.
	Socket string `yaml:"socket"`
	// RuntimeDir holds session dirs; it must be on tmpfs or ramfs.
	RuntimeDir string `yaml:"runtime_dir"`
	// StateDir holds the lease store and the audit log.
	StateDir string `yaml:"state_dir"`
	// AuditLog is the audit log path (default StateDir/audit.log).
	AuditLog string `yaml:"audit_log"`
	// AuditSyslog copies every audit record to the local syslog
	// (journald on systemd machines), facility authpriv.
	AuditSyslog bool `yaml:"audit_syslog"`
	// AllowedUIDs may talk to the daemon; the daemon's own uid always may.
	AllowedUIDs []int `yaml:"allowed_uids"`
	// DaemonUID is the uid the daemon runs as. Clients check the socket's
	// server (SO_PEERCRED) before sending anything and accept only root
	// and this uid; unset, they accept root and their own uid. The daemon
	// refuses to start under another uid.
	DaemonUID *int `yaml:"daemon_uid"`
	// AdminUIDs may also clear an incident and end or hold any session.
	// Root and the daemon's own uid always may: they hold the broker's
	// authority anyway.
	AdminUIDs []int `yaml:"admin_uids"`
	// RefreshInterval is how often the refresher and reaper wake (default 5s).
	RefreshInterval Duration `yaml:"refresh_interval"`
	// HostID names this broker among those sharing a PostgreSQL store
	// (fleet mode); it owns the sessions it starts. Default: the host name
	// when store.driver is postgres (see EffectiveHostID), none otherwise.
	HostID string `yaml:"host_id"`
	// Egress holds settings of the sessions' egress gateways.
	Egress BrokerEgress `yaml:"egress"`
	// Metrics serves Prometheus metrics when its listen is set (off by
	// default; see docs/operations.md, "Metrics").
	Metrics BrokerMetrics `yaml:"metrics"`
}

// Store selects the lease store.
type Store struct {
	// Driver is "sqlite" (default) or "postgres" (fleet mode: brokers on
	// many hosts share one database).
	Driver string `yaml:"driver"`
	// Path is the SQLite file (default StateDir/leases.db); sqlite only.
	Path string `yaml:"path"`
	// DSNEnv names an environment variable holding the PostgreSQL DSN;
	// postgres only. The DSN is never written in the config: it usually
	// holds a password.
	DSNEnv string `yaml:"dsn_env"`
	// DSNFile is a file holding the PostgreSQL DSN; postgres only.
	DSNFile string `yaml:"dsn_file"`
}

// Providers holds the broker's own connection to each backend.
type Providers struct {
	Vault *VaultProvider `yaml:"vault"`
	AWS   *AWSProvider   `yaml:"aws"`
	Kube  *KubeProvider  `yaml:"kube"`
}

// VaultProvider is how the broker reaches and authenticates to Vault.
type VaultProvider struct {
	// Address is Vault's URL (or $VAULT_ADDR).
	Address string `yaml:"address"`
	// Namespace is an optional Vault Enterprise namespace.
	Namespace string `yaml:"namespace"`
	// CACert is a PEM file to trust for Vault's TLS certificate.
	CACert string `yaml:"ca_cert"`
	// Auth is how the broker logs in.
	Auth VaultAuth `yaml:"auth"`
	// TokenRole is the token role session tokens are created through; its
	// allowed_policies cap what any session may carry.
	TokenRole string `yaml:"token_role"`
	// EpochTTL is the life of the broker's epoch token (default 24h); it
	// must be longer than every role's max_ttl.
	EpochTTL Duration `yaml:"epoch_ttl"`
}

// VaultAuth selects the broker's Vault login. Exactly one of token_env,
// token_file or approle is set; the default is token_env VAULT_TOKEN.
type VaultAuth struct {
	// TokenEnv names an environment variable holding the broker's token.
	TokenEnv string `yaml:"token_env"`
	// TokenFile is a file holding the broker's token.
	TokenFile string `yaml:"token_file"`
	// AppRole logs in with role_id and a secret_id read from a file or env.
	AppRole *AppRole `yaml:"approle"`
}

// AppRole is an AppRole login.
type AppRole struct {
	Mount        string `yaml:"mount"` // default "approle"
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
	SecretIDEnv  string `yaml:"secret_id_env"`
}

// Role is what one kind of agent session may get.
type Role struct {
	// Name is the map key (filled in by the loader).
	Name string `yaml:"-"`
	// Description is shown in listings.
	Description string `yaml:"description"`
	// TTL is the default session life; MaxTTL caps --ttl.
	TTL    Duration `yaml:"ttl"`
	MaxTTL Duration `yaml:"max_ttl"`
	// AllowedUIDs and AllowedGroups (names or gids) narrow who may start
	// a session of the role; with neither, every caller the socket admits
	// may. Admins always may.
	AllowedUIDs   []int    `yaml:"allowed_uids"`
	AllowedGroups []string `yaml:"allowed_groups"`
	// Vault, when set, gives the session a Vault token and secrets.
	Vault *VaultRole `yaml:"vault"`
	// AWS, when set, gives the session temporary STS credentials.
	AWS *AWSRole `yaml:"aws"`
	// Kube, when set, gives the session a Kubernetes service account and
	// a kubeconfig with its short-lived token.
	Kube *KubeRole `yaml:"kube"`
	// Egress, when set, gives the session a network gateway that reaches
	// only the hosts it allows (see docs/egress.md); without it the
	// sandbox has no network.
	Egress *Egress `yaml:"egress"`
	// Delivery is how the session gets its credentials: "files" (default:
	// the real, short-lived values in the session dir) or "proxy" (the
	// session dir holds placeholders and the egress gateway puts the real
	// credential on each request to the hosts it is bound to; see
	// docs/proxy-mode.md). A provider block's own delivery overrides it.
	Delivery string `yaml:"delivery"`
	// Inject binds secrets read from Vault at session start to hosts: the
	// sandbox gets a placeholder and the gateway puts the real value on
	// requests to those hosts only (docs/proxy-mode.md).
	Inject []Inject `yaml:"inject"`
}

// ProviderNames lists the providers a role uses, in a fixed order (the
// order sessions mint them in and docs list them in).
func (r Role) ProviderNames() []string {
	var ps []string
	if r.Vault != nil {
		ps = append(ps, "vault")
	}
	if r.AWS != nil {
		ps = append(ps, "aws")
	}
	if r.Kube != nil {
		ps = append(ps, "kube")
	}
	return ps
}

// VaultRole is a role's Vault block.
type VaultRole struct {
	// Policies are attached to the session token; the token role's
	// allowed_policies must include them.
	Policies []string `yaml:"policies"`
	// Secrets are read with the session token at mint time and written to
	// vault/secrets/<name>.json.
	Secrets []VaultSecret `yaml:"secrets"`
	// Delivery overrides the role's delivery for the Vault token.
	Delivery string `yaml:"delivery"`
}

// VaultSecret is one secret read for a session.
type VaultSecret struct {
	// Name is the file name under vault/secrets (letters, digits, - and _).
	Name string `yaml:"name"`
	// Path is the Vault API path, e.g. "secret/data/app" (KV v2) or
	// "database/creds/readonly" (dynamic).
	Path string `yaml:"path"`
	// Method is "read" (default) or "write" (for endpoints such as
	// pki/issue/<role> that mint on write).
	Method string `yaml:"method"`
	// Data is the request body for Method "write".
	Data map[string]any `yaml:"data"`
}

// Duration is a time.Duration written as "20m", "1h30m" in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
