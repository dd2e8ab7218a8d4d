package guard

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxFile bounds what a scan reads of one file.
const maxFile = 16 << 20

// ReadFileLines returns a file's lines.
func ReadFileLines(path string) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLines(io.LimitReader(f, maxFile))
}

func readLines(r io.Reader) ([]Line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxFile)
	var out []Line
	for n := 1; sc.Scan(); n++ {
		out = append(out, Line{N: n, Text: bytes.Clone(sc.Bytes())})
	}
	return out, sc.Err()
}

// WalkFiles calls fn for every regular file under the paths (skipping .git
// directories and symlinks).
func WalkFiles(paths []string, fn func(path string) error) error {
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == ".git" {
				return filepath.SkipDir
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return fn(p)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ParseDiff returns the lines a unified diff adds, by file, numbered as in
// the new file (run git diff with -U0 or any context).
func ParseDiff(r io.Reader) (map[string][]Line, error) {
	out := map[string][]Line{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxFile)
	file, n := "", 0
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "+++ "):
			file = strings.TrimPrefix(strings.TrimPrefix(l, "+++ "), "b/")
			if file == "/dev/null" {
				file = ""
			}
		case strings.HasPrefix(l, "@@ "):
			// @@ -a,b +c,d @@
			fields := strings.Fields(l)
			if len(fields) < 3 || !strings.HasPrefix(fields[2], "+") {
				return nil, fmt.Errorf("guard: malformed hunk header %q", l)
			}
			start, _, _ := strings.Cut(strings.TrimPrefix(fields[2], "+"), ",")
			v, err := strconv.Atoi(start)
			if err != nil {
				return nil, fmt.Errorf("guard: malformed hunk header %q", l)
			}
			n = v
		case strings.HasPrefix(l, "+") && file != "":
			out[file] = append(out[file], Line{N: n, Text: []byte(l[1:])})
			n++
		case strings.HasPrefix(l, " "):
			n++
		}
	}
	return out, sc.Err()
}
