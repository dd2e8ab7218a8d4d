package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// findEnv isolates Find from the machine: XDG_CONFIG_HOME, HOME and the
// system path all point into a temp dir, with no file created yet.
type findEnv struct {
	flag, env, xdg, home, system string
}

func newFindEnv(t *testing.T) findEnv {
	t.Helper()
	dir := isolateEnv(t)
	e := findEnv{
		flag:   filepath.Join(dir, "flag.yaml"),
		env:    filepath.Join(dir, "env.yaml"),
		xdg:    filepath.Join(dir, "config", "credbroker", "config.yaml"),
		home:   filepath.Join(dir, "home", ".config", "credbroker", "config.yaml"),
		system: filepath.Join(dir, "etc", "credbroker", "config.yaml"),
	}
	old := systemConfigPath
	systemConfigPath = e.system
	t.Cleanup(func() { systemConfigPath = old })
	return e
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("roles: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFindOrder(t *testing.T) {
	tests := []struct {
		name   string
		exist  func(findEnv) []string
		flag   bool
		setEnv bool
		noXDG  bool
		want   func(findEnv) string
	}{
		{name: "flag wins over everything",
			exist: func(e findEnv) []string { return []string{e.flag, e.env, e.xdg, e.system} },
			flag:  true, setEnv: true, want: func(e findEnv) string { return e.flag }},
		{name: "env wins over files",
			exist:  func(e findEnv) []string { return []string{e.env, e.xdg, e.system} },
			setEnv: true, want: func(e findEnv) string { return e.env }},
		{name: "XDG_CONFIG_HOME wins over /etc",
			exist: func(e findEnv) []string { return []string{e.xdg, e.system} },
			want:  func(e findEnv) string { return e.xdg }},
		{name: "~/.config when XDG_CONFIG_HOME is unset",
			exist: func(e findEnv) []string { return []string{e.home, e.system} },
			noXDG: true, want: func(e findEnv) string { return e.home }},
		{name: "XDG_CONFIG_HOME set hides ~/.config",
			exist: func(e findEnv) []string { return []string{e.home, e.system} },
			want:  func(e findEnv) string { return e.system }},
		{name: "/etc last",
			exist: func(e findEnv) []string { return []string{e.system} },
			want:  func(e findEnv) string { return e.system }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFindEnv(t)
			for _, p := range tt.exist(e) {
				touch(t, p)
			}
			flag := ""
			if tt.flag {
				flag = e.flag
			}
			if tt.setEnv {
				t.Setenv(EnvConfig, e.env)
			}
			if tt.noXDG {
				t.Setenv("XDG_CONFIG_HOME", "")
			}
			got, err := Find(flag)
			if err != nil || got != tt.want(e) {
				t.Fatalf("Find(%q) = %q, %v; want %q", flag, got, err, tt.want(e))
			}
		})
	}
}

func TestFindExplicitPathMustExist(t *testing.T) {
	t.Run("flag", func(t *testing.T) {
		e := newFindEnv(t)
		touch(t, e.xdg)
		_, err := Find(e.flag)
		if err == nil || !strings.Contains(err.Error(), e.flag+" (from --config) does not exist") {
			t.Fatalf("err = %v, want it to name the missing --config file", err)
		}
	})
	t.Run("env", func(t *testing.T) {
		e := newFindEnv(t)
		touch(t, e.xdg)
		t.Setenv(EnvConfig, e.env)
		_, err := Find("")
		if err == nil || !strings.Contains(err.Error(), e.env+" (from $CREDBROKER_CONFIG) does not exist") {
			t.Fatalf("err = %v, want it to name the missing $CREDBROKER_CONFIG file", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		e := newFindEnv(t)
		_, err := Find(filepath.Dir(e.flag))
		if err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Fatalf("err = %v, want a directory error", err)
		}
	})
}

func TestFindNothingListsEveryPlace(t *testing.T) {
	e := newFindEnv(t)
	_, err := Find("")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"--config (not given)", "$CREDBROKER_CONFIG (not set)", e.xdg, e.system, "credbroker config example > " + e.xdg} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestFindWithoutHome(t *testing.T) {
	e := newFindEnv(t)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "")
	_, err := Find("")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "neither XDG_CONFIG_HOME nor HOME is set") || !strings.Contains(err.Error(), e.system) {
		t.Fatalf("err = %v", err)
	}
}
