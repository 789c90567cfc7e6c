package slugbuilder

import (
	"archive/tar"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
	"github.com/gantryhq/gantry/slugrunner"
)

func TestGoApp(t *testing.T) {
	needsTools(t)
	t.Parallel()
	cold, cache := coldGoBuild(t)
	t.Logf("cold Go build: %.1fs, cache %s", cold.dur.Seconds(), humanSize(int64(len(cache))))
	for _, want := range []string{"-----> Go app detected", "-----> Installing Go toolchain go1.26.8", "-----> No build cache yet"} {
		if !strings.Contains(cold.out, want) {
			t.Errorf("cold build output lacks %q:\n%s", want, cold.out)
		}
	}

	warm := build(t, filepath.Join("testdata", "apps", "go-web"), withGoCache(t, cache))
	if warm.err != nil {
		t.Fatalf("warm build: %v\n%s", warm.err, warm.out)
	}
	t.Logf("warm Go build: %.1fs", warm.dur.Seconds())
	for _, want := range []string{
		"-----> Restored build cache",
		"-----> Go toolchain go1.26.8 (the toolchain line of go.mod)",
		"-----> Using cached Go toolchain go1.26.8",
		"       Built bin/goweb, bin/worker",
		"       Procfile declares types -> web, worker",
		"-----> Compiled slug size is ",
		"-----> Saved build cache (",
	} {
		if !strings.Contains(warm.out, want) {
			t.Errorf("warm build output lacks %q:\n%s", want, warm.out)
		}
	}
	if strings.Contains(warm.out, "Installing Go toolchain") || strings.Contains(warm.out, "go: downloading") {
		t.Errorf("the warm build downloaded again:\n%s", warm.out)
	}

	res := warm.res
	if want := map[string]string{"web": "bin/goweb", "worker": "bin/worker"}; !maps.Equal(res.ProcessTypes, want) {
		t.Errorf("process types %v, want %v", res.ProcessTypes, want)
	}
	if !slices.Equal(res.Buildpacks, []string{"gantry/go"}) {
		t.Errorf("buildpacks %v", res.Buildpacks)
	}
	slugBytes, err := os.ReadFile(warm.cfg.SlugPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(slugBytes)
	if res.SlugDigest != "sha256:"+hex.EncodeToString(sum[:]) || res.SlugSize != int64(len(slugBytes)) {
		t.Errorf("result %s %d does not describe the slug file (%d bytes)", res.SlugDigest, res.SlugSize, len(slugBytes))
	}
	var stored slugtypes.Result
	data, err := os.ReadFile(warm.cfg.ResultPath)
	if err != nil {
		t.Fatalf("no result written: %v", err)
	}
	if err := json.Unmarshal(data, &stored); err != nil || stored.SlugDigest != res.SlugDigest || !maps.Equal(stored.ProcessTypes, res.ProcessTypes) || !stored.CacheSaved {
		t.Errorf("written result %s (%v), want %+v", data, err, res)
	}

	slug := readSlug(t, warm)
	for _, bin := range []string{"bin/goweb", "bin/worker"} {
		e, ok := slug[bin]
		if !ok || e.typ != tar.TypeReg || e.mode&0o111 == 0 {
			t.Errorf("slug lacks the executable %s: %+v", bin, e)
		}
	}
	if _, ok := slug["go.mod"]; !ok {
		t.Error("slug lacks the source")
	}
}

func TestGoCompileError(t *testing.T) {
	needsTools(t)
	t.Parallel()
	_, cache := coldGoBuild(t)
	b := build(t, filepath.Join("testdata", "apps", "go-broken"), withGoCache(t, cache))
	if !errors.Is(b.err, ErrCompile) {
		t.Fatalf("err = %v, want ErrCompile\n%s", b.err, b.out)
	}
	if !strings.Contains(b.out, `./main.go:7:18: cannot use "three" (untyped string constant) as int value in variable declaration`) {
		t.Errorf("output lacks the compiler's error:\n%s", b.out)
	}
	if !strings.Contains(b.out, " !     compile failed: buildpack gantry/go: go build: exit status 1") {
		t.Errorf("output lacks the failure line:\n%s", b.out)
	}
	if entries, err := os.ReadDir(filepath.Dir(b.cfg.SlugPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build wrote into the output directory: %v %v", entries, err)
	}
}

func TestGoDefaultWeb(t *testing.T) {
	needsTools(t)
	t.Parallel()
	_, cache := coldGoBuild(t)
	b := build(t, filepath.Join("testdata", "apps", "go-hello"), withGoCache(t, cache))
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	if want := map[string]string{"web": "bin/gohello"}; !maps.Equal(b.res.ProcessTypes, want) {
		t.Errorf("process types %v, want %v", b.res.ProcessTypes, want)
	}
	if !strings.Contains(b.out, "       Default types for buildpack -> web") {
		t.Errorf("output lacks the default types:\n%s", b.out)
	}
}

func TestGoWithoutProxy(t *testing.T) {
	needsTools(t)
	t.Parallel()
	b := build(t, filepath.Join("testdata", "apps", "go-hello"), func(c *Config) {
		c.Env = map[string]string{"GOPROXY": "off"}
	})
	if !errors.Is(b.err, errGoProxy) {
		t.Fatalf("err = %v, want errGoProxy", b.err)
	}
	if !strings.Contains(b.out, ` !     compile failed: buildpack gantry/go: no Go module proxy: GOPROXY is "off", which names no proxy URL`) {
		t.Errorf("output lacks a clear message:\n%s", b.out)
	}
}

func TestDetection(t *testing.T) {
	needsTools(t)
	t.Parallel()
	for _, tc := range []struct {
		app       string
		detected  string
		buildpack string
		types     map[string]string
		files     []string // in the slug
	}{
		{"static", "Static HTML", "gantry/static", map[string]string{"web": "gantryd slugrunner static"}, []string{"public/index.html", "public/style.css"}},
		{"procfile-shell", "Procfile", "gantry/procfile", map[string]string{"web": "./web.sh", "worker": "while true; do echo tick; sleep 5; done"}, []string{"web.sh", "Procfile"}},
		{"no-port", "Procfile", "gantry/procfile", map[string]string{"web": "sleep infinity"}, []string{"Procfile"}},
		{"python", "Python", "gantry/python", map[string]string{"web": "python3 app.py"}, []string{"app.py", ".venv/bin/python", ".venv/pyvenv.cfg", ".profile.d/python.sh"}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			t.Parallel()
			b := build(t, filepath.Join("testdata", "apps", tc.app), nil)
			if b.err != nil {
				t.Fatalf("build: %v\n%s", b.err, b.out)
			}
			if !strings.Contains(b.out, "-----> "+tc.detected+" app detected\n") {
				t.Errorf("output lacks the detection of %s:\n%s", tc.detected, b.out)
			}
			if !slices.Equal(b.res.Buildpacks, []string{tc.buildpack}) {
				t.Errorf("buildpacks %v, want %s", b.res.Buildpacks, tc.buildpack)
			}
			if !maps.Equal(b.res.ProcessTypes, tc.types) {
				t.Errorf("process types %v, want %v", b.res.ProcessTypes, tc.types)
			}
			slug := readSlug(t, b)
			for _, f := range tc.files {
				if _, ok := slug[f]; !ok {
					t.Errorf("slug lacks %s", f)
				}
			}
			for name, e := range slug {
				if e.typ == tar.TypeSymlink && (strings.HasPrefix(e.link, "/") || strings.HasPrefix(e.link, "..")) {
					t.Errorf("slug holds the link %s -> %s, which leads outside the app", name, e.link)
				}
			}
		})
	}
}

func TestUnchangedCacheNotSaved(t *testing.T) {
	needsTools(t)
	t.Parallel()
	cache := filepath.Join(t.TempDir(), "cache.tgz")
	first := build(t, filepath.Join("testdata", "apps", "static"), withCache(cache))
	if first.err != nil || !strings.Contains(first.out, "-----> No build cache yet") ||
		!strings.Contains(first.out, "-----> Saved build cache (") || !first.res.CacheSaved {
		t.Fatalf("first build: %v\n%s", first.err, first.out)
	}
	saved, err := os.Stat(cache)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "cache-out.tgz")
	second := build(t, filepath.Join("testdata", "apps", "static"), func(c *Config) {
		c.CacheInPath, c.CacheOutPath = cache, out
	})
	if second.err != nil || !strings.Contains(second.out, "-----> Build cache unchanged; not saving it again") || second.res.CacheSaved {
		t.Fatalf("second build: %v\n%s", second.err, second.out)
	}
	if exists(t, out) {
		t.Error("an unchanged cache was written")
	}
	if again, err := os.Stat(cache); err != nil || !again.ModTime().Equal(saved.ModTime()) {
		t.Errorf("the input cache changed: %v", err)
	}
}

// TestCacheDir builds twice with a kept cache dir: it is CACHE_DIR itself,
// never cleared, and nothing is restored or saved.
func TestCacheDir(t *testing.T) {
	needsTools(t)
	t.Parallel()
	dir := t.TempDir()
	first := build(t, filepath.Join("testdata", "apps", "static"), func(c *Config) { c.CacheDir = dir })
	if first.err != nil || !strings.Contains(first.out, "-----> No build cache yet") ||
		strings.Contains(first.out, "Saved build cache") || first.res.CacheSaved {
		t.Fatalf("first build: %v\n%s", first.err, first.out)
	}
	// What a buildpack left in CACHE_DIR.
	if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := build(t, filepath.Join("testdata", "apps", "static"), func(c *Config) { c.CacheDir = dir })
	if second.err != nil || !strings.Contains(second.out, "-----> Using the build cache kept on this host") {
		t.Fatalf("second build: %v\n%s", second.err, second.out)
	}
	if !exists(t, filepath.Join(dir, "kept")) {
		t.Error("the kept cache dir was cleared")
	}
}

func TestProcfileShellKeepsModes(t *testing.T) {
	needsTools(t)
	t.Parallel()
	b := build(t, filepath.Join("testdata", "apps", "procfile-shell"), nil)
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	if e := readSlug(t, b)["web.sh"]; e.mode != 0o755 {
		t.Errorf("web.sh has mode %o in the slug, want 755", e.mode)
	}
}

func TestNoBuildpack(t *testing.T) {
	needsTools(t)
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("nothing to run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := build(t, dir, nil)
	if !errors.Is(b.err, ErrNoBuildpack) {
		t.Fatalf("err = %v, want ErrNoBuildpack", b.err)
	}
	if !strings.Contains(b.out, " !     no buildpack detected the app: no go.mod") {
		t.Errorf("output lacks the reason:\n%s", b.out)
	}
}

func TestBadProcfile(t *testing.T) {
	needsTools(t)
	t.Parallel()
	dir := app(t, "no-port")
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web: sleep infinity\n# fine\nworker sleep 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := build(t, dir, nil)
	if !errors.Is(b.err, ErrProcfile) {
		t.Fatalf("err = %v, want ErrProcfile", b.err)
	}
	if !strings.Contains(b.out, "line 3") || !strings.Contains(b.out, "worker sleep 1") {
		t.Errorf("the error does not name the line:\n%s", b.out)
	}
}

// TestProcfileCaps builds apps whose Procfile declares too many process
// types or is too large: each build fails and says which limit was hit.
func TestProcfileCaps(t *testing.T) {
	needsTools(t)
	t.Parallel()
	var many strings.Builder
	for i := range slugrunner.MaxProcessTypes + 1 {
		fmt.Fprintf(&many, "t%d: sleep %d\n", i, i)
	}
	for _, tc := range []struct {
		name, procfile, want string
	}{
		{"too many types", many.String(), "more than 100 process types"},
		{"too large", "web: sleep infinity\n" + strings.Repeat("# padding\n", slugrunner.MaxProcfileSize/10+1), "the Procfile is larger than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := app(t, "no-port")
			if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte(tc.procfile), 0o644); err != nil {
				t.Fatal(err)
			}
			b := build(t, dir, nil)
			if !errors.Is(b.err, ErrProcfile) {
				t.Fatalf("err = %v, want ErrProcfile", b.err)
			}
			if !strings.Contains(b.out, tc.want) {
				t.Errorf("the build output lacks %q:\n%s", tc.want, b.out)
			}
		})
	}
}

func TestSlugignore(t *testing.T) {
	needsTools(t)
	t.Parallel()
	dir := app(t, "static")
	files := map[string]string{
		".slugignore":              "# not needed at run time\n*.psd\n/docs\nspec/fixtures/\n**/tmp\n",
		"public/logo.psd":          "layers",
		"public/img/a/b/hero.psd":  "layers",
		"docs/guide.md":            "words",
		"public/docs/keep.html":    "kept: /docs is anchored",
		"spec/fixtures/big.json":   "{}",
		"spec/helper.txt":          "kept",
		"public/tmp/scratch":       "gone",
		"public/assets/app.js":     "kept",
		"public/assets/tmp.js.map": "kept",
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := build(t, dir, nil)
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	if !strings.Contains(b.out, "-----> Applied .slugignore: removed 5 paths") {
		t.Errorf("output lacks the .slugignore summary:\n%s", b.out)
	}
	slug := readSlug(t, b)
	for _, gone := range []string{"public/logo.psd", "public/img/a/b/hero.psd", "docs", "docs/guide.md", "spec/fixtures", "public/tmp"} {
		if _, ok := slug[gone]; ok {
			t.Errorf("slug holds %s, which .slugignore excludes", gone)
		}
	}
	for _, kept := range []string{"public/docs/keep.html", "spec/helper.txt", "public/assets/app.js", "public/assets/tmp.js.map", "public/img/a/b", "public/index.html"} {
		if _, ok := slug[kept]; !ok {
			t.Errorf("slug lacks %s", kept)
		}
	}
}

func TestSlugTooLarge(t *testing.T) {
	needsTools(t)
	t.Parallel()
	dir := app(t, "static")
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(dir, "public", "noise.bin"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	b := build(t, dir, func(c *Config) { c.MaxSlugSize = 64 << 10 })
	if !errors.Is(b.err, ErrSlugTooLarge) {
		t.Fatalf("err = %v, want ErrSlugTooLarge\n%s", b.err, b.out)
	}
	if !strings.Contains(b.out, "is over the limit of 64K (65536 bytes)") || !strings.Contains(b.out, " !     slug too large: compressed size 25") {
		t.Errorf("the error does not give the size and the limit:\n%s", b.out)
	}
	if exists(t, b.cfg.SlugPath) {
		t.Error("a slug over the limit was written")
	}
	if entries, err := os.ReadDir(filepath.Dir(b.cfg.SlugPath)); err != nil || len(entries) != 0 {
		t.Errorf("the output directory holds %v (%v), want nothing", entries, err)
	}
}

func TestRefusedBuildpackURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"http://example.com/buildpack.git",
		"git@example.com:org/buildpack.git",
		"ssh://git@example.com/org/buildpack.git",
		"file:///srv/buildpack",
		"/srv/buildpack",
		"gantry/ruby",
		"https://example.com",
		"https://example.com/pack.git#--upload-pack=evil",
	} {
		t.Run(raw, func(t *testing.T) {
			var out strings.Builder
			_, err := Build(t.Context(), Config{
				SourcePath:   filepath.Join(t.TempDir(), "source.tgz"),
				SlugPath:     filepath.Join(t.TempDir(), "slug.tgz"),
				BuildpackURL: raw,
				Out:          &out,
			})
			if !errors.Is(err, ErrBuildpackURL) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrBuildpackURL", err)
			}
			if !strings.Contains(out.String(), " !     ") || !strings.Contains(out.String(), "use an https git URL") {
				t.Errorf("output lacks a clear error: %q", out.String())
			}
		})
	}
}

func TestRefusedBuildpacksFile(t *testing.T) {
	needsTools(t)
	t.Parallel()
	dir := app(t, "static")
	if err := os.WriteFile(filepath.Join(dir, ".buildpacks"), []byte("gantry/static\ngit://example.com/pack.git\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := build(t, dir, nil)
	if !errors.Is(b.err, ErrBuildpackURL) {
		t.Fatalf("err = %v, want ErrBuildpackURL", b.err)
	}
	if !strings.Contains(b.out, ".buildpacks line 2: refused buildpack URL \"git://example.com/pack.git\": scheme git is not allowed") {
		t.Errorf("output lacks the line and the reason:\n%s", b.out)
	}
}

func TestMissingSource(t *testing.T) {
	t.Parallel()
	b := build(t, t.TempDir(), func(c *Config) { c.SourcePath = filepath.Join(t.TempDir(), "none.tgz") })
	if !errors.Is(b.err, ErrSource) || !errors.Is(b.err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrSource for a missing file", b.err)
	}
	if !strings.Contains(b.out, " !     bad source archive: open ") {
		t.Errorf("output lacks the reason:\n%s", b.out)
	}
}

func TestAppDirNotEmpty(t *testing.T) {
	t.Parallel()
	appDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(appDir, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(t.Context(), Config{SourcePath: "/nonexistent/source.tgz", SlugPath: filepath.Join(t.TempDir(), "slug.tgz"), AppDir: appDir})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("err = %v, want a not-empty app dir", err)
	}
}
