package slugbuilder

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Timeouts of the Go buildpack's own network calls.
const (
	goListTimeout     = 30 * time.Second
	goDownloadTimeout = 10 * time.Minute
	goToolTimeout     = 2 * time.Minute
)

// errGoProxy is wrapped when no Go module proxy is configured.
var errGoProxy = errors.New("no Go module proxy")

// goBuildpack builds a Go module (go.mod at the app's root) with the Go
// toolchain go.mod asks for, fetched from the Go module proxy named by
// GOPROXY. Every main package is built into bin/. CACHE_DIR/go keeps the
// toolchain, the module cache and the build cache between builds.
type goBuildpack struct {
	// mains holds the binary names of the main packages, set by compile.
	mains []string
}

var _ buildpack = (*goBuildpack)(nil)

func (*goBuildpack) name() string { return builtinPrefix + "go" }

func (*goBuildpack) detect(_ context.Context, s *stage) (string, bool, error) {
	return "Go", isFile(filepath.Join(s.buildDir, "go.mod")), nil
}

func (g *goBuildpack) compile(ctx context.Context, s *stage) error {
	data, err := os.ReadFile(filepath.Join(s.buildDir, "go.mod"))
	if err != nil {
		return err
	}
	mod, err := parseGoMod(data)
	if err != nil {
		return err
	}
	choice, err := chooseToolchain(mod)
	if err != nil {
		return err
	}
	goproxy := s.getenv("GOPROXY")
	proxies, err := parseGoProxy(goproxy)
	if err != nil {
		return err
	}
	cache := filepath.Join(s.cacheDir, "go")
	version, err := g.resolve(ctx, s, proxies, choice, cache)
	if err != nil {
		return err
	}
	s.out.step("Go toolchain %s (%s)", version, choice.why)
	goroot, err := g.toolchain(ctx, s, proxies, cache, version)
	if err != nil {
		return err
	}
	env := goEnv(s, goroot, cache, goproxy)
	gobin := filepath.Join(goroot, "bin", "go")

	s.out.step("Building main packages: go build -trimpath -o bin/ ./...")
	if err := runProgram(ctx, s.compileTimeout, s.buildDir, env, s.out, s.out, gobin, "build", "-trimpath", "-o", s.buildDir+string(filepath.Separator)+"bin"+string(filepath.Separator), "./..."); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	var list bytes.Buffer
	if err := runProgram(ctx, goToolTimeout, s.buildDir, env, &list, s.out, gobin, "list", "-f", `{{if eq .Name "main"}}{{.Target}}{{end}}`, "./..."); err != nil {
		return fmt.Errorf("go list: %w", err)
	}
	g.mains = nil
	for _, target := range strings.Fields(list.String()) {
		g.mains = append(g.mains, filepath.Base(target))
	}
	if len(g.mains) == 0 {
		return errors.New("the module has no main package, so nothing to run")
	}
	s.out.info("Built %s", "bin/"+strings.Join(g.mains, ", bin/"))
	return nil
}

// release declares "web: bin/<name>" when the module has exactly one main
// package and the app has no Procfile.
func (g *goBuildpack) release(_ context.Context, s *stage) (map[string]string, error) {
	if len(g.mains) != 1 || isFile(filepath.Join(s.buildDir, "Procfile")) {
		return nil, nil
	}
	return map[string]string{"web": "bin/" + g.mains[0]}, nil
}

// resolve turns the choice into an exact version, asking the module proxy
// for the newest release when the choice needs it. When the proxy cannot
// be asked, a cached toolchain of the same minor version is used.
func (g *goBuildpack) resolve(ctx context.Context, s *stage, proxies []goProxy, choice toolchainChoice, cache string) (goVersion, error) {
	if !choice.newestOf {
		return choice.version, nil
	}
	list, err := proxyGet(ctx, s.http, proxies, "golang.org/toolchain/@v/list", goListTimeout)
	if err == nil {
		defer list.Close()
		var b []byte
		if b, err = io.ReadAll(io.LimitReader(list, 8<<20)); err == nil {
			if v, ok := newestRelease(b, choice.version, runtime.GOARCH); ok {
				return v, nil
			}
			return goVersion{}, fmt.Errorf("the module proxy lists no %s.x toolchain for linux-%s; name one with a toolchain line in go.mod", choice.version, runtime.GOARCH)
		}
	}
	if v, ok := cachedToolchain(cache, choice.version); ok {
		s.out.info("Cannot list Go toolchains (%v); using the cached %s", err, v)
		return v, nil
	}
	return goVersion{}, fmt.Errorf("list Go toolchains: %w", err)
}

// cachedToolchain returns the newest cached release of want's minor version.
func cachedToolchain(cache string, want goVersion) (goVersion, bool) {
	entries, _ := os.ReadDir(filepath.Join(cache, "toolchains"))
	var names bytes.Buffer
	for _, e := range entries {
		if isFile(filepath.Join(cache, "toolchains", e.Name(), "bin", "go")) {
			fmt.Fprintf(&names, "v0.0.1-%s.linux-%s\n", e.Name(), runtime.GOARCH)
		}
	}
	return newestRelease(names.Bytes(), want, runtime.GOARCH)
}

// toolchain returns the GOROOT of version, from the cache or downloaded
// from the module proxy as the golang.org/toolchain module. Other cached
// toolchains are removed, so the cache holds one.
func (g *goBuildpack) toolchain(ctx context.Context, s *stage, proxies []goProxy, cache string, version goVersion) (string, error) {
	dir := filepath.Join(cache, "toolchains")
	goroot := filepath.Join(dir, version.String())
	if isFile(filepath.Join(goroot, "bin", "go")) {
		s.out.step("Using cached Go toolchain %s", version)
		return goroot, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return "", err
		}
	}
	module := fmt.Sprintf("v0.0.1-%s.linux-%s", version, runtime.GOARCH)
	s.out.step("Installing Go toolchain %s (golang.org/toolchain@%s)", version, module)
	start := time.Now()
	body, err := proxyGet(ctx, s.http, proxies, "golang.org/toolchain/@v/"+module+".zip", goDownloadTimeout)
	if err != nil {
		return "", fmt.Errorf("download Go toolchain %s: %w", version, err)
	}
	defer body.Close()
	zf, err := os.CreateTemp(dir, ".download-*.zip")
	if err != nil {
		return "", err
	}
	defer os.Remove(zf.Name())
	defer zf.Close()
	n, err := io.Copy(zf, body)
	if err != nil {
		return "", fmt.Errorf("download Go toolchain %s: %w", version, err)
	}
	s.out.info("Downloaded %s in %.1fs", humanSize(n), time.Since(start).Seconds())
	tmp, err := os.MkdirTemp(dir, ".extract-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	prefix := "golang.org/toolchain@" + module + "/"
	if err := extractToolchain(ctx, zf, n, prefix, tmp); err != nil {
		return "", fmt.Errorf("unpack Go toolchain %s: %w", version, err)
	}
	if !isFile(filepath.Join(tmp, "bin", "go")) {
		return "", fmt.Errorf("unpack Go toolchain %s: no bin/go in the module", version)
	}
	if err := os.Rename(tmp, goroot); err != nil {
		return "", err
	}
	return goroot, nil
}

// extractToolchain unpacks the files of a toolchain module zip under prefix
// into dir, leaving out what building an app never reads (see
// neededToBuild). Module zips keep no file modes, so, like the go command,
// it makes the files under bin/ and pkg/tool/ executable.
func extractToolchain(ctx context.Context, r io.ReaderAt, size int64, prefix, dir string) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return err
	}
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, ok := strings.CutPrefix(f.Name, prefix)
		if !ok || name == "" || strings.HasSuffix(name, "/") {
			continue
		}
		if !isLocalSlashPath(name) {
			return fmt.Errorf("bad path %q in the module zip", f.Name)
		}
		if !f.Mode().IsRegular() || !neededToBuild(name) {
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") || strings.HasPrefix(name, "pkg/tool/") {
			mode = 0o755
		}
		if err := extractZipFile(f, filepath.Join(dir, filepath.FromSlash(name)), mode); err != nil {
			return err
		}
	}
	return nil
}

// neededToBuild reports whether the toolchain file name (a slash path in
// GOROOT) can matter to building an app. The sources of the Go commands
// (src/cmd: the tools are prebuilt in pkg/tool), the standard library's
// tests and their testdata are left out: that is two thirds of the files
// and a third of the bytes, which every build would otherwise restore and
// save with the cache. So are the programs `go build` never runs (gofmt,
// and the cover, fix and vet tools of `go test`, `go fix` and `go vet`).
func neededToBuild(name string) bool {
	switch name {
	case "bin/gofmt":
		return false
	}
	if tool, ok := strings.CutPrefix(name, "pkg/tool/"); ok {
		_, prog, _ := strings.Cut(tool, "/")
		switch prog {
		case "cover", "fix", "vet":
			return false
		}
		return true
	}
	rest, ok := strings.CutPrefix(name, "src/")
	if !ok {
		return true
	}
	return !strings.HasPrefix(rest, "cmd/") && !strings.HasSuffix(rest, "_test.go") &&
		!strings.HasPrefix(rest, "testdata/") && !strings.Contains(rest, "/testdata/")
}

func extractZipFile(f *zip.File, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, rc); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// isLocalSlashPath reports whether p is a relative slash path that stays
// inside its root.
func isLocalSlashPath(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../") && filepath.IsLocal(filepath.FromSlash(p))
}

// goProxy is one proxy URL of a GOPROXY list.
type goProxy struct {
	url string
	// anyError is set when the entry is followed by "|": any error, not
	// only "not found", moves on to the next entry.
	anyError bool
}

// parseGoProxy reads a GOPROXY value ("https://proxy.example,direct").
// "direct" entries are skipped (toolchains come from a proxy only) and
// "off" ends the list. No proxy URL at all is an error.
func parseGoProxy(v string) ([]goProxy, error) {
	var proxies []goProxy
	rest := strings.TrimSpace(v)
	for rest != "" {
		i := strings.IndexAny(rest, ",|")
		entry, sep := rest, byte(0)
		if i >= 0 {
			entry, sep, rest = rest[:i], rest[i], rest[i+1:]
		} else {
			rest = ""
		}
		entry = strings.TrimSpace(entry)
		switch entry {
		case "":
			continue
		case "direct":
			continue
		case "off":
			rest = ""
			continue
		}
		u, err := url.Parse(entry)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("%w: GOPROXY entry %q is not an http(s) URL", errGoProxy, entry)
		}
		proxies = append(proxies, goProxy{url: strings.TrimSuffix(entry, "/"), anyError: sep == '|'})
	}
	if len(proxies) == 0 {
		why := "is not set"
		if strings.TrimSpace(v) != "" {
			why = fmt.Sprintf("is %q, which names no proxy URL", v)
		}
		return nil, fmt.Errorf("%w: GOPROXY %s; the Go buildpack fetches the Go toolchain from a Go module proxy, so set GOPROXY to its URL (as a config var or in the builder's environment)", errGoProxy, why)
	}
	return proxies, nil
}

// proxyGet fetches p (such as "golang.org/toolchain/@v/list") from the
// first proxy that has it, following the GOPROXY fallback rules: "not
// found" moves on to the next proxy, other errors only after a "|". The
// returned body must be closed; reading it is bounded by timeout.
func proxyGet(ctx context.Context, client *http.Client, proxies []goProxy, p string, timeout time.Duration) (io.ReadCloser, error) {
	var errs []error
	for _, px := range proxies {
		body, notFound, err := proxyGetOne(ctx, client, px.url+"/"+p, timeout)
		if err == nil {
			return body, nil
		}
		errs = append(errs, err)
		if !notFound && !px.anyError {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func proxyGetOne(ctx context.Context, client *http.Client, rawURL string, timeout time.Duration) (io.ReadCloser, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		cancel()
		return nil, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, false, fmt.Errorf("GET %s: %w", redactURL(rawURL), err)
	}
	if resp.StatusCode != http.StatusOK {
		err := statusError(resp)
		resp.Body.Close()
		cancel()
		notFound := resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone
		return nil, notFound, fmt.Errorf("GET %s: %w", redactURL(rawURL), err)
	}
	return &cancelBody{ReadCloser: resp.Body, cancel: cancel}, false, nil
}

// statusError describes an unexpected response with the start of its body.
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		return fmt.Errorf("unexpected status %s", resp.Status)
	}
	return fmt.Errorf("unexpected status %s: %s", resp.Status, msg)
}

// cancelBody releases a request's context when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// goEnv returns the environment of the go command: the buildpacks' one, the
// app's config vars named GO* and CGO_*, then the settings the buildpack
// owns: the toolchain first in PATH and always used (GOTOOLCHAIN=local),
// caches in CACHE_DIR, no go env file, CGO_ENABLED=0 unless a config var
// says otherwise, and -modcacherw so the module cache can be removed. Config
// vars cannot override the settings the buildpack owns (GOROOT, GOPATH,
// GOBIN, GOCACHE, GOMODCACHE, GOTOOLCHAIN, GOENV, GOPROXY).
func goEnv(s *stage, goroot, cache, goproxy string) []string {
	owned := []string{"GOROOT", "GOPATH", "GOBIN", "GOCACHE", "GOMODCACHE", "GOTOOLCHAIN", "GOENV", "GOPROXY"}
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range s.environ {
		if k, v, ok := strings.Cut(kv, "="); ok && !slices.Contains(owned, k) {
			set(k, v)
		}
	}
	set("CGO_ENABLED", "0")
	keys := make([]string, 0, len(s.env))
	for k := range s.env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if (strings.HasPrefix(k, "GO") || strings.HasPrefix(k, "CGO_")) && !slices.Contains(owned, k) {
			set(k, s.env[k])
		}
	}
	pathList := filepath.Join(goroot, "bin")
	if p := vars["PATH"]; p != "" {
		pathList += string(os.PathListSeparator) + p
	}
	set("PATH", pathList)
	set("GOTOOLCHAIN", "local")
	set("GOENV", "off")
	set("GOPROXY", goproxy)
	set("GOPATH", filepath.Join(cache, "path"))
	set("GOMODCACHE", filepath.Join(cache, "mod"))
	set("GOCACHE", filepath.Join(cache, "build"))
	set("GOFLAGS", strings.TrimSpace("-modcacherw "+vars["GOFLAGS"]))
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env
}
