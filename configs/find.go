package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvConfig names the environment variable that points at the config file.
const EnvConfig = "CREDBROKER_CONFIG"

// systemConfigPath is the machine-wide config; a variable so tests can move it.
var systemConfigPath = "/etc/credbroker/config.yaml"

// ErrNotFound is returned (wrapped) by Find when no config file exists in
// any of the places it looks.
var ErrNotFound = errors.New("no config file found")

// Find returns the config file to load. It looks, in order, at flagPath
// (the --config flag), $CREDBROKER_CONFIG, $XDG_CONFIG_HOME/credbroker/
// config.yaml (XDG_CONFIG_HOME defaulting to ~/.config) and
// /etc/credbroker/config.yaml. A path given explicitly by the flag or the
// variable must exist: Find does not fall through to the next place, which
// would silently load a config the user did not ask for. When nothing is
// found, the error (matching ErrNotFound) lists every place looked.
func Find(flagPath string) (string, error) {
	if flagPath != "" {
		return explicit(flagPath, "--config")
	}
	if p := os.Getenv(EnvConfig); p != "" {
		return explicit(p, "$"+EnvConfig)
	}
	looked := []string{"--config (not given)", "$" + EnvConfig + " (not set)"}
	var candidates []string
	if dir := userConfigDir(); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "credbroker", "config.yaml"))
	} else {
		looked = append(looked, "$XDG_CONFIG_HOME/credbroker/config.yaml (neither XDG_CONFIG_HOME nor HOME is set)")
	}
	candidates = append(candidates, systemConfigPath)
	for _, p := range candidates {
		ok, err := isFile(p)
		if err != nil {
			return "", fmt.Errorf("find config: %w", err)
		}
		if ok {
			return p, nil
		}
		looked = append(looked, p)
	}
	return "", fmt.Errorf("%w; looked at:\n  %s\ncreate one with: credbroker config example > %s",
		ErrNotFound, strings.Join(looked, "\n  "), candidates[0])
}

// explicit checks a path the user named; from says where it came from.
func explicit(p, from string) (string, error) {
	ok, err := isFile(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("config file %s (from %s): %w", p, from, err)
	case !ok:
		return "", fmt.Errorf("config file %s (from %s) does not exist; fix the path or create it with: credbroker config example > %s", p, from, p)
	}
	return p, nil
}

// isFile reports whether p exists; a directory or an unreadable parent is
// an error, not a reason to look elsewhere.
func isFile(p string) (bool, error) {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.IsDir():
		return false, fmt.Errorf("%s is a directory, not a config file", p)
	}
	return true, nil
}

// userConfigDir is $XDG_CONFIG_HOME, else ~/.config, else "".
func userConfigDir() string {
	if d := absEnv("XDG_CONFIG_HOME"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".config")
	}
	return ""
}
