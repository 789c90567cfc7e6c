package slugbuilder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

// goproxy is the test machine's GOPROXY (`go env GOPROXY`), given to the Go
// builds as a config var.
var goproxy string

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go env GOPROXY:", err)
			os.Exit(1)
		}
		goproxy = strings.TrimSpace(string(out))
	}
	os.Exit(m.Run())
}

// needsTools skips under -short: the build tests run real buildpacks,
// git, python3 and the Go toolchain from the module proxy.
func needsTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real buildpacks")
	}
}

// testBuild is one build of an app by a test.
type testBuild struct {
	cfg Config
	res *slugtypes.Result
	out string
	err error
	dur time.Duration
}

// build builds the app in dir with the inputs and outputs in a new
// directory; edit may change the Config first.
func build(t *testing.T, dir string, edit func(*Config)) testBuild {
	t.Helper()
	files := t.TempDir()
	src := filepath.Join(files, "in", "source.tgz")
	writeFile(t, src, tarDir(t, dir))
	var out bytes.Buffer
	cfg := Config{
		SourcePath: src,
		SlugPath:   filepath.Join(files, "out", "slug.tgz"),
		ResultPath: filepath.Join(files, "out", "result.json"),
		AppDir:     filepath.Join(t.TempDir(), "app"),
		WorkDir:    t.TempDir(),
		Out:        &out,
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(tLogWriter{t}, nil))
	}
	if edit != nil {
		edit(&cfg)
	}
	start := time.Now()
	res, err := Build(t.Context(), cfg)
	b := testBuild{cfg: cfg, res: res, out: out.String(), err: err, dur: time.Since(start)}
	if testing.Verbose() {
		t.Logf("build output (%.1fs):\n%s", b.dur.Seconds(), b.out)
	}
	return b
}

// withCache makes builds restore and save their cache in the file path.
func withCache(path string) func(*Config) {
	return func(c *Config) {
		c.CacheInPath, c.CacheOutPath = path, path
	}
}

// tLogWriter sends log lines to t.Log.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// app copies the test app testdata/apps/name to a new directory, for tests
// that add files to it.
func app(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", "apps", name))); err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeFile writes data to path, making its directory.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// exists reports whether path exists.
func exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// tarDir archives dir with the system's tar, as a source archive.
func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command("tar", "-C", dir, "-czf", "-", ".")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tar %s: %v: %s", dir, err, stderr.String())
	}
	return out.Bytes()
}

// entry is one file of an unpacked slug.
type entry struct {
	typ  byte
	mode int64
	data string
	link string
}

// readSlug returns the entries of the slug the build wrote.
func readSlug(t *testing.T, b testBuild) map[string]entry {
	t.Helper()
	data, err := os.ReadFile(b.cfg.SlugPath)
	if err != nil {
		t.Fatalf("read the slug: %v", err)
	}
	return slugEntries(t, data)
}

// slugEntries returns the entries of the slug data.
func slugEntries(t *testing.T, data []byte) map[string]entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	entries := map[string]entry{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(hdr.Name, "/") || strings.HasPrefix(hdr.Name, "../") || strings.Contains(hdr.Name, "/../") {
			t.Errorf("slug entry %q is not a relative path inside the app", hdr.Name)
		}
		e := entry{typ: hdr.Typeflag, mode: hdr.Mode, link: hdr.Linkname}
		if hdr.Typeflag == tar.TypeReg && hdr.Size < 1<<20 {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			e.data = string(b)
		}
		entries[strings.TrimSuffix(hdr.Name, "/")] = e
	}
	return entries
}

// goCache is the build cache of a Go build, made once per test run by the
// first Go build (the one that downloads the toolchain) and shared by the
// others.
var goCache struct {
	once  sync.Once
	data  []byte
	build testBuild
}

// coldGoBuild builds the go-web app once per test run with an empty cache
// and returns that build and the cache it saved.
func coldGoBuild(t *testing.T) (testBuild, []byte) {
	t.Helper()
	goCache.once.Do(func() {
		cache := filepath.Join(t.TempDir(), "cache.tgz")
		goCache.build = build(t, filepath.Join("testdata", "apps", "go-web"), func(c *Config) {
			withCache(cache)(c)
			c.Env = map[string]string{"GOPROXY": goproxy}
		})
		goCache.data, _ = os.ReadFile(cache)
	})
	if goCache.build.err != nil {
		t.Fatalf("cold Go build: %v\n%s", goCache.build.err, goCache.build.out)
	}
	if goCache.data == nil {
		t.Fatal("the cold Go build saved no cache")
	}
	return goCache.build, goCache.data
}

// withGoCache sets up a Go build with a copy of the shared warm cache.
func withGoCache(t *testing.T, data []byte) func(*Config) {
	path := filepath.Join(t.TempDir(), "cache.tgz")
	writeFile(t, path, data)
	return func(c *Config) {
		withCache(path)(c)
		c.Env = map[string]string{"GOPROXY": goproxy}
	}
}
