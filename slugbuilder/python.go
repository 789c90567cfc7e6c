package slugbuilder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Timeouts of the Python buildpack's steps other than pip install.
const (
	venvTimeout  = 2 * time.Minute
	pipTimeout   = 30 * time.Second
	indexTimeout = 5 * time.Second
)

// pythonBuildpack builds an app with a requirements.txt or a *.py file at
// its root: a virtualenv in .venv made with the stack's python3 (copied, not
// linked: a slug holds no links leading outside the app), put first
// in PATH by .profile.d/python.sh, and the requirements installed into it
// with pip. Dependencies are installed only when a package index answers:
// PIP_INDEX_URL (a config var or the builder's environment), else the index
// pip is configured with. When none answers, a requirements.txt that lists
// packages fails the build.
type pythonBuildpack struct{}

var _ buildpack = pythonBuildpack{}

func (pythonBuildpack) name() string { return builtinPrefix + "python" }

func (pythonBuildpack) detect(_ context.Context, s *stage) (string, bool, error) {
	if isFile(filepath.Join(s.buildDir, "requirements.txt")) {
		return "Python", true, nil
	}
	entries, err := os.ReadDir(s.buildDir)
	if err != nil {
		return "", false, err
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".py") {
			return "Python", true, nil
		}
	}
	return "", false, nil
}

func (pythonBuildpack) compile(ctx context.Context, s *stage) error {
	var version bytes.Buffer
	if err := runProgram(ctx, pipTimeout, s.buildDir, s.environ, &version, &version, "python3", "--version"); err != nil {
		return fmt.Errorf("python3 --version: %w: %s", err, strings.TrimSpace(version.String()))
	}
	venv := filepath.Join(s.buildDir, ".venv")
	s.out.step("Creating a virtualenv in .venv with %s", strings.TrimSpace(version.String()))
	if err := runProgram(ctx, venvTimeout, s.buildDir, s.environ, s.out, s.out, "python3", "-m", "venv", "--copies", venv); err != nil {
		return fmt.Errorf("python3 -m venv: %w", err)
	}
	if err := writeProfile(s.buildDir, "python.sh", "# The app's virtualenv, made by the gantry/python buildpack.\n"+
		"export VIRTUAL_ENV="+shellQuote(venv)+"\n"+
		"export PATH=\"$VIRTUAL_ENV/bin:$PATH\"\n"+
		"export PYTHONUNBUFFERED=1\n"); err != nil {
		return err
	}

	reqs, err := os.ReadFile(filepath.Join(s.buildDir, "requirements.txt"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.out.info("No requirements.txt: no dependencies to install")
		return nil
	case err != nil:
		return err
	case !listsPackages(reqs):
		s.out.info("requirements.txt lists no packages: no dependencies to install")
		return nil
	}

	python := filepath.Join(venv, "bin", "python")
	index, source, err := pipIndex(ctx, s, python)
	if err != nil {
		return fmt.Errorf("dependencies were not installed: cannot tell which package index pip uses: %w", err)
	}
	if err := probeIndex(ctx, s.http, index); err != nil {
		return fmt.Errorf("dependencies were not installed: the package index %s (%s) does not answer: %w; set PIP_INDEX_URL to a reachable index", redactURL(index), source, err)
	}
	s.out.step("Installing requirements.txt with pip from %s (%s)", redactURL(index), source)
	env := append(slices.Clip(s.environ),
		"VIRTUAL_ENV="+venv,
		"PATH="+filepath.Join(venv, "bin")+string(os.PathListSeparator)+s.environValue("PATH"),
		"PIP_INDEX_URL="+index,
		"PIP_CACHE_DIR="+filepath.Join(s.cacheDir, "python", "pip"),
		"PIP_DISABLE_PIP_VERSION_CHECK=1",
		"PIP_NO_INPUT=1",
	)
	for k, v := range s.env {
		if strings.HasPrefix(k, "PIP_") && k != "PIP_INDEX_URL" && k != "PIP_CACHE_DIR" {
			env = append(env, k+"="+v)
		}
	}
	if err := runProgram(ctx, s.compileTimeout, s.buildDir, env, s.out, s.out, python, "-m", "pip", "install", "-r", "requirements.txt"); err != nil {
		return fmt.Errorf("pip install: %w", err)
	}
	return nil
}

func (pythonBuildpack) release(context.Context, *stage) (map[string]string, error) {
	return nil, nil
}

// listsPackages reports whether a requirements file has any line other than
// blanks and comments.
func listsPackages(reqs []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(reqs))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && line[0] != '#' {
			return true
		}
	}
	return false
}

// pipIndex returns the package index pip would use and where that choice
// comes from: PIP_INDEX_URL, else pip's configuration, else pip's default.
func pipIndex(ctx context.Context, s *stage, python string) (index, source string, err error) {
	if v := s.getenv("PIP_INDEX_URL"); v != "" {
		return v, "PIP_INDEX_URL", nil
	}
	var cfg bytes.Buffer
	if err := runProgram(ctx, pipTimeout, s.buildDir, s.environ, &cfg, nil, python, "-m", "pip", "config", "list"); err == nil {
		found := map[string]string{}
		for _, line := range strings.Split(cfg.String(), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if ok && strings.HasSuffix(k, ".index-url") {
				found[strings.TrimSuffix(k, ".index-url")] = strings.Trim(v, `'"`)
			}
		}
		for _, scope := range []string{"install", "global"} {
			if v := found[scope]; v != "" {
				return v, "pip's " + scope + ".index-url setting", nil
			}
		}
	}
	var def bytes.Buffer
	if err := runProgram(ctx, pipTimeout, s.buildDir, s.environ, &def, s.out, python, "-c",
		"from pip._internal.models.index import PyPI; print(PyPI.simple_url)"); err != nil {
		return "", "", fmt.Errorf("ask pip for its default index: %w", err)
	}
	return strings.TrimSpace(def.String()), "pip's default index", nil
}

// probeIndex reports whether the package index at raw answers an HTTP
// request within indexTimeout (any response below 500 counts), or, for a
// file URL, whether its directory exists.
func probeIndex(ctx context.Context, client *http.Client, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme == "file" {
		if !isDir(u.Path) {
			return fmt.Errorf("%s is not a directory", u.Path)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, indexTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", indexTimeout)
		}
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// writeProfile writes a .profile.d script, sourced by the slug runner
// before a process starts.
func writeProfile(buildDir, name, script string) error {
	dir := filepath.Join(buildDir, ".profile.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), []byte(script), 0o644)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
