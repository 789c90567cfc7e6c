package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoBinaries means that the PostgreSQL server binaries are not installed.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found in PATH " +
	"or /usr/lib/postgresql/*/bin; install them with: apt-get install postgresql (Debian/Ubuntu)")

// libGlob is where Debian and Ubuntu install the server binaries, one
// directory per major version.
const libGlob = "/usr/lib/postgresql/*/bin"

// Binaries are the PostgreSQL server programs that Start runs.
type Binaries struct {
	// InitDB is the path of initdb.
	InitDB string
	// Postgres is the path of postgres, from the same directory as InitDB.
	Postgres string
}

// FindBinaries looks for initdb and postgres in PATH first, then in
// /usr/lib/postgresql/<version>/bin, highest version first. Both must come
// from the same directory. It returns ErrNoBinaries when there are none.
func FindBinaries() (Binaries, error) {
	return findBinaries(os.Getenv("PATH"), libGlob)
}

// BinariesIn returns the binaries in dir, or an error wrapping ErrNoBinaries
// when dir lacks one of them.
func BinariesIn(dir string) (Binaries, error) {
	b := Binaries{InitDB: filepath.Join(dir, "initdb"), Postgres: filepath.Join(dir, "postgres")}
	for _, p := range []string{b.InitDB, b.Postgres} {
		if !isExecutable(p) {
			return Binaries{}, fmt.Errorf("%s: %w", p, ErrNoBinaries)
		}
	}
	return b, nil
}

func findBinaries(pathEnv, glob string) (Binaries, error) {
	if p, err := lookPath("initdb", pathEnv); err == nil {
		// PATH may hold symbolic links (e.g. /usr/local/bin/initdb); postgres
		// must sit next to the real initdb.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if b, err := BinariesIn(filepath.Dir(real)); err == nil {
				return b, nil
			}
		}
		if b, err := BinariesIn(filepath.Dir(p)); err == nil {
			return b, nil
		}
	}
	dirs, err := filepath.Glob(glob)
	if err != nil {
		return Binaries{}, fmt.Errorf("search %s: %w", glob, err)
	}
	slices.SortFunc(dirs, func(a, b string) int { return slices.Compare(versionOf(b), versionOf(a)) })
	for _, d := range dirs {
		if b, err := BinariesIn(d); err == nil {
			return b, nil
		}
	}
	return Binaries{}, ErrNoBinaries
}

// lookPath is exec.LookPath over an explicit PATH value.
func lookPath(name, pathEnv string) (string, error) {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// versionOf returns the numeric components of the version directory in
// /usr/lib/postgresql/<version>/bin, e.g. [9 6] for 9.6.
func versionOf(binDir string) []int {
	var v []int
	for f := range strings.SplitSeq(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

// Tool returns the path of one of PostgreSQL's client programs (pg_dump,
// pg_restore, vacuumlo, ...) of the same version as the server binaries:
// the one next to the real postgres binary (symbolic links resolved). It
// returns an error wrapping ErrNoBinaries when that directory lacks it.
func (b Binaries) Tool(name string) (string, error) {
	dir := filepath.Dir(b.Postgres)
	if real, err := filepath.EvalSymlinks(b.Postgres); err == nil {
		dir = filepath.Dir(real)
	}
	p := filepath.Join(dir, name)
	if !isExecutable(p) {
		return "", fmt.Errorf("%s: %w", p, ErrNoBinaries)
	}
	return p, nil
}
