// Package storeopen opens the lease store a config selects. Only the daemon
// links it (SQLite and PostgreSQL drivers are large): the broker package
// takes an opener in its DaemonOptions.
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres"
	"github.com/credbroker/credbroker/leases/sqlite"
)

// Open opens the lease store the config selects: the SQLite file by
// default, or the PostgreSQL database a fleet of brokers shares.
func Open(ctx context.Context, c configs.Store) (leases.Store, error) {
	switch c.Driver {
	case "postgres":
		dsn, err := readDSN(c)
		if err != nil {
			return nil, fmt.Errorf("open lease store: %w", err)
		}
		st, err := postgres.Open(ctx, dsn.Reveal())
		if err != nil {
			return nil, fmt.Errorf("open lease store: %w", err)
		}
		return st, nil
	default:
		st, err := sqlite.Open(ctx, c.Path)
		if err != nil {
			return nil, fmt.Errorf("open lease store: %w", err)
		}
		return st, nil
	}
}

// readDSN reads the PostgreSQL DSN from store.dsn_file or store.dsn_env.
// Neither the DSN nor any part of it is ever put in an error.
func readDSN(c configs.Store) (secret.Value, error) {
	if c.DSNFile != "" {
		b, err := os.ReadFile(c.DSNFile)
		if err != nil {
			// The path error names the file, not its content.
			return secret.Value{}, fmt.Errorf("read store.dsn_file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return secret.Value{}, fmt.Errorf("store.dsn_file %s is empty", c.DSNFile)
		}
		return secret.New(v), nil
	}
	if c.DSNEnv == "" {
		return secret.Value{}, errors.New("store: driver postgres needs dsn_env or dsn_file")
	}
	v := strings.TrimSpace(os.Getenv(c.DSNEnv))
	if v == "" {
		return secret.Value{}, fmt.Errorf("environment variable %s (store.dsn_env) is not set; export it or use store.dsn_file", c.DSNEnv)
	}
	return secret.New(v), nil
}
