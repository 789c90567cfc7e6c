package slugbuilder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Timeouts of the buildpack steps other than bin/compile.
const (
	detectTimeout  = time.Minute
	releaseTimeout = time.Minute
	cloneTimeout   = 5 * time.Minute
)

// buildpack is one step of a build, with the Heroku buildpack contract:
// detect says whether it applies to the app, compile builds the app in
// BUILD_DIR, release declares default process types. The built-in
// buildpacks implement it in Go; a custom buildpack runs its bin/detect,
// bin/compile and bin/release scripts.
type buildpack interface {
	// name identifies the buildpack in the Result: "gantry/go", or the URL.
	name() string
	// detect reports whether the buildpack builds the app and the app's
	// kind ("Go") for the output.
	detect(ctx context.Context, s *stage) (kind string, ok bool, err error)
	// compile builds the app in s.buildDir.
	compile(ctx context.Context, s *stage) error
	// release returns the default process types.
	release(ctx context.Context, s *stage) (map[string]string, error)
}

// stage is what a buildpack works with.
type stage struct {
	buildDir       string            // BUILD_DIR: the app, becomes /app
	cacheDir       string            // CACHE_DIR: kept between builds
	envDir         string            // ENV_DIR: one file per config var
	homeDir        string            // HOME of the buildpack programs
	packsDir       string            // where custom buildpacks are cloned
	env            map[string]string // the config vars of ENV_DIR
	environ        []string          // the environment of the buildpack programs
	out            *lineWriter
	http           *http.Client
	compileTimeout time.Duration // bounds each compile step
}

// getenv returns the config var name, else the variable name of the
// buildpacks' environment.
func (s *stage) getenv(name string) string {
	if v, ok := s.env[name]; ok {
		return v
	}
	return s.environValue(name)
}

// environValue returns the variable name of the buildpacks' environment.
func (s *stage) environValue(name string) string {
	for i := len(s.environ) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(s.environ[i], name+"="); ok {
			return v
		}
	}
	return ""
}

// builtinPrefix starts the names of the built-in buildpacks.
const builtinPrefix = "gantry/"

// builtinNames lists the built-in buildpacks in detection order.
var builtinNames = []string{"go", "static", "python", "procfile"}

// newBuiltin returns the built-in buildpack called name ("go"), or nil.
func newBuiltin(name string) buildpack {
	switch name {
	case "go":
		return &goBuildpack{}
	case "static":
		return staticBuildpack{}
	case "python":
		return pythonBuildpack{}
	case "procfile":
		return procfileBuildpack{}
	}
	return nil
}

// buildpackRef is a parsed buildpack URL: a built-in name or a git URL.
type buildpackRef struct {
	builtin string // "go" for "gantry/go"
	repo    string // https URL of the git repository, without the fragment
	ref     string // branch or tag from the "#ref" fragment, or ""
	raw     string
}

// parseBuildpackRef accepts "gantry/<name>" for a built-in buildpack and
// "https://host/path[#ref]" for a git repository; anything else (http,
// ssh, git@, file, local paths) wraps ErrBuildpackURL.
func parseBuildpackRef(s string) (buildpackRef, error) {
	refused := func(why string) (buildpackRef, error) {
		return buildpackRef{}, fmt.Errorf("%w %q: %s; use an https git URL (with an optional #branch or #tag) or one of %s",
			ErrBuildpackURL, redactURL(s), why, strings.Join(builtinList(), ", "))
	}
	s = strings.TrimSpace(s)
	if name, ok := strings.CutPrefix(s, builtinPrefix); ok && !strings.Contains(s, "://") {
		if newBuiltin(name) == nil {
			return refused("no such built-in buildpack")
		}
		return buildpackRef{builtin: name, raw: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return refused("not a URL")
	}
	if u.Scheme != "https" {
		return refused("scheme " + u.Scheme + " is not allowed")
	}
	if u.Host == "" || u.Path == "" || u.Path == "/" || u.Opaque != "" {
		return refused("no repository path")
	}
	ref := u.Fragment
	if ref != "" && (strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, " \t\n\\:?*[~^") || strings.Contains(ref, "..")) {
		return refused("#" + ref + " is not a branch or tag name")
	}
	u.Fragment, u.RawFragment = "", ""
	return buildpackRef{repo: u.String(), ref: ref, raw: s}, nil
}

func builtinList() []string {
	names := make([]string, len(builtinNames))
	for i, n := range builtinNames {
		names[i] = builtinPrefix + n
	}
	return names
}

// parseBuildpacksFile reads a .buildpacks file: one buildpack URL or
// built-in name per line; blank lines and "#" comments are skipped.
func parseBuildpacksFile(data []byte) ([]buildpackRef, error) {
	var refs []buildpackRef
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		ref, err := parseBuildpackRef(line)
		if err != nil {
			return nil, fmt.Errorf(".buildpacks line %d: %w", n, err)
		}
		refs = append(refs, ref)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf(".buildpacks: %w", err)
	}
	if len(refs) == 0 {
		return nil, errors.New(".buildpacks names no buildpack")
	}
	return refs, nil
}

// gitBuildpack is a custom buildpack fetched with git: its bin/detect,
// bin/compile and bin/release run as programs.
type gitBuildpack struct {
	ref buildpackRef
	dir string // the checkout
}

var _ buildpack = (*gitBuildpack)(nil)

func (b *gitBuildpack) name() string { return redactURL(b.ref.raw) }

// fetch clones the buildpack (depth 1, the ref's branch or tag) into b.dir.
func (b *gitBuildpack) fetch(ctx context.Context, s *stage) error {
	s.out.step("Fetching buildpack %s", redactURL(b.ref.raw))
	args := []string{"clone", "--quiet", "--depth", "1", "--single-branch"}
	if b.ref.ref != "" {
		args = append(args, "--branch", b.ref.ref)
	}
	args = append(args, "--", b.ref.repo, b.dir)
	var out bytes.Buffer
	env := append(slices.Clip(s.environ), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false")
	if err := runProgram(ctx, cloneTimeout, "", env, &out, &out, "git", args...); err != nil {
		msg := strings.TrimSpace(out.String())
		return fmt.Errorf("fetch buildpack %s: %w: %s", redactURL(b.ref.raw), err, msg)
	}
	return nil
}

func (b *gitBuildpack) detect(ctx context.Context, s *stage) (string, bool, error) {
	script := filepath.Join(b.dir, "bin", "detect")
	if _, err := os.Stat(script); errors.Is(err, os.ErrNotExist) {
		return path.Base(strings.TrimSuffix(b.ref.repo, ".git")), true, nil
	}
	var stdout bytes.Buffer
	err := runProgram(ctx, detectTimeout, s.buildDir, s.environ, &stdout, s.out, script, s.buildDir)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("bin/detect: %w", err)
	}
	kind, _, _ := strings.Cut(strings.TrimSpace(stdout.String()), "\n")
	if kind == "" {
		kind = path.Base(strings.TrimSuffix(b.ref.repo, ".git"))
	}
	return kind, true, nil
}

func (b *gitBuildpack) compile(ctx context.Context, s *stage) error {
	script := filepath.Join(b.dir, "bin", "compile")
	return runProgram(ctx, s.compileTimeout, s.buildDir, s.environ, s.out, s.out, script, s.buildDir, s.cacheDir, s.envDir)
}

func (b *gitBuildpack) release(ctx context.Context, s *stage) (map[string]string, error) {
	script := filepath.Join(b.dir, "bin", "release")
	if _, err := os.Stat(script); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var stdout bytes.Buffer
	if err := runProgram(ctx, releaseTimeout, s.buildDir, s.environ, &stdout, s.out, script, s.buildDir); err != nil {
		return nil, fmt.Errorf("bin/release: %w", err)
	}
	return parseReleaseYAML(stdout.Bytes())
}

// timeoutError is returned by runProgram for a program that ran out of time.
type timeoutError struct {
	program string
	after   time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%s did not finish within %s", e.program, e.after)
}

// runProgram runs name with args in dir, in its own process group, bounded
// by timeout. When it ends, times out or ctx ends, the whole group is
// killed, so no child it started outlives it. Nil stdout or stderr discard.
func runProgram(ctx context.Context, timeout time.Duration, dir string, env []string, stdout, stderr io.Writer, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &timeoutError{program: filepath.Base(name), after: timeout}
	}
	return err
}
