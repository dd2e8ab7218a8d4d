package keyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nobody = 65534

func TestRead(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, p string) // p does not exist yet
		root     bool                         // needs root (chown)
		wantErr  []string                     // nil: read succeeds
		anyOwner bool                         // ReadAnyOwner accepts it
	}{
		{name: "0600 owned by us", setup: write(0o600), anyOwner: true},
		{name: "0400 owned by us", setup: write(0o400), anyOwner: true},
		{name: "group readable", setup: write(0o640), wantErr: []string{"mode 0640", "chmod 0600"}},
		{name: "other readable", setup: write(0o604), wantErr: []string{"mode 0604", "chmod 0600"}},
		{name: "group writable", setup: write(0o620), wantErr: []string{"mode 0620"}},
		{name: "owned by another uid", root: true, anyOwner: true, setup: func(t *testing.T, p string) {
			write(0o600)(t, p)
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"owned by uid 65534", "chown"}},
		{name: "symlink to a good key", setup: func(t *testing.T, p string) {
			real := p + ".real"
			write(0o600)(t, real)
			if err := os.Symlink(real, p); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"is a symlink", "point the config at the file itself"}},
		{name: "directory", setup: func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Fatal("needs root to chown a file to another uid (the test suite runs as root): run make test as root, as CI does")
			}
			p := filepath.Join(t.TempDir(), "key")
			tc.setup(t, p)
			b, err := Read(p)
			if tc.wantErr == nil {
				if err != nil || string(b) != key {
					t.Fatalf("Read: %v (read %d bytes)", err, len(b))
				}
				return
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("Read = %v, want ErrUnsafe", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), p) {
					t.Errorf("error %q lacks %q or the path", err, w)
				}
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("error holds the key")
			}
			_, err = ReadAnyOwner(p)
			if tc.anyOwner != (err == nil) {
				t.Errorf("ReadAnyOwner = %v, want accepted: %v", err, tc.anyOwner)
			}
		})
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func write(mode os.FileMode) func(t *testing.T, p string) {
	return func(t *testing.T, p string) {
		t.Helper()
		if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}
