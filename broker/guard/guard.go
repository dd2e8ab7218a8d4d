// Package guard is the leak guard: the broker keeps a keyed fingerprint
// (HMAC-SHA256 with a broker-local key) of every secret it issued, for as
// long as that secret could be valid, and never the secret itself. A scan
// fingerprints candidate strings in files or diffs and reports exact
// matches only, so it has no false positives.
package guard

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/credbroker/credbroker/internal/keyfile"
	"github.com/credbroker/credbroker/internal/secret"
)

// MinLen is the shortest secret fingerprinted: shorter values (a region
// name, a port) could occur in honest text.
const MinLen = 16

// Files in the state dir.
const (
	KeyFile          = "guard.key"
	FingerprintsFile = "fingerprints.jsonl"
)

// Fingerprint is what is kept of one issued secret.
type Fingerprint struct {
	MAC      string    `json:"mac"` // hex HMAC-SHA256(key, value)
	Len      int       `json:"len"` // the value's length (scan windows)
	Session  string    `json:"session"`
	Provider string    `json:"provider"`
	What     string    `json:"what"` // e.g. "vault token", "aws secret access key"
	Expires  time.Time `json:"expires"`
}

// Issued is a secret a provider issued, as the broker hands it to the guard.
type Issued struct {
	Value    secret.Value
	Session  string
	Provider string
	What     string
	Expires  time.Time
}

// Guard holds the key and the fingerprints.
type Guard struct {
	dir string
	key []byte

	mu  sync.Mutex
	fps map[string]Fingerprint // by MAC
	now func() time.Time
}

// Open loads (creating with mode 0600 if needed) the key and fingerprints
// in dir.
func Open(dir string) (*Guard, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	key, err := loadKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	g := &Guard{dir: dir, key: key, fps: map[string]Fingerprint{}, now: time.Now}
	if err := g.load(); err != nil {
		return nil, err
	}
	return g, nil
}

// OpenReadOnly loads an existing guard without creating anything (the
// scanner, run by a user who may not own the state dir).
func OpenReadOnly(dir string) (*Guard, error) {
	key, err := keyfile.ReadAnyOwner(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("guard: read the broker's fingerprint key: %w (run as the broker's user, or point --state-dir at its state dir)", err)
	}
	g := &Guard{dir: dir, key: key, fps: map[string]Fingerprint{}, now: time.Now}
	return g, g.load()
}

// loadKey reads the key (refusing a symlink, a file owned by another uid
// or open to group or others: whoever can read it can test guesses against
// the fingerprints), or creates it if missing.
func loadKey(path string) ([]byte, error) {
	b, err := keyfile.Read(path)
	if err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("guard: %s is not a 32-byte key", path)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("guard: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("guard: write key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("guard: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("guard: write key: %w", err)
	}
	return key, nil
}

func (g *Guard) load() error {
	f, err := os.Open(filepath.Join(g.dir, FingerprintsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	now := g.now()
	for sc.Scan() {
		var fp Fingerprint
		if json.Unmarshal(sc.Bytes(), &fp) == nil && fp.Expires.After(now) {
			g.fps[fp.MAC] = fp
		}
	}
	return sc.Err()
}

func (g *Guard) mac(v []byte) string {
	m := hmac.New(sha256.New, g.key)
	m.Write(v)
	return hex.EncodeToString(m.Sum(nil))
}

// Add fingerprints issued secrets and appends them to the file. Values
// shorter than MinLen are skipped.
func (g *Guard) Add(items ...Issued) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var buf []byte // one write for all: a line is never split by another Add
	fps := make([]Fingerprint, 0, len(items))
	for _, it := range items {
		if len(it.Value.Bytes()) < MinLen {
			continue
		}
		fp := Fingerprint{MAC: g.mac(it.Value.Bytes()), Len: len(it.Value.Bytes()), Session: it.Session,
			Provider: it.Provider, What: it.What, Expires: it.Expires.UTC()}
		b, _ := json.Marshal(fp)
		buf = append(append(buf, b...), '\n')
		fps = append(fps, fp)
	}
	if len(fps) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(g.dir, FingerprintsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	_, err = f.Write(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	for _, fp := range fps {
		g.fps[fp.MAC] = fp
	}
	return nil
}

// Prune drops fingerprints whose secrets have expired and rewrites the
// file atomically.
func (g *Guard) Prune() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	tmp := filepath.Join(g.dir, FingerprintsFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	for k, fp := range g.fps {
		if !fp.Expires.After(now) {
			delete(g.fps, k)
			continue
		}
		b, _ := json.Marshal(fp)
		if _, err := f.Write(append(b, '\n')); err != nil {
			f.Close()
			return fmt.Errorf("guard: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(g.dir, FingerprintsFile))
}

// Len is the number of live fingerprints.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fps)
}

// lengths returns the distinct secret lengths (scan window sizes).
func (g *Guard) lengths() []int {
	seen := map[int]bool{}
	var out []int
	for _, fp := range g.fps {
		if !seen[fp.Len] {
			seen[fp.Len] = true
			out = append(out, fp.Len)
		}
	}
	return out
}

func (g *Guard) lookup(v []byte) (Fingerprint, bool) {
	fp, ok := g.fps[g.mac(v)]
	return fp, ok && fp.Expires.After(g.now())
}

// Verify returns the live fingerprint mac (hex, as in Hit.Fingerprint)
// when it belongs to session: a reported hit is believed only when the
// reporter could fingerprint one of that session's secrets, which takes
// the broker's key and the secret (or the broker's fingerprint file).
func (g *Guard) Verify(session, mac string) (Fingerprint, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fp, ok := g.fps[mac]
	if !ok || mac == "" || fp.Session != session || !fp.Expires.After(g.now()) {
		return Fingerprint{}, false
	}
	return fp, true
}
