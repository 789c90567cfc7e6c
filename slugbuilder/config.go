package slugbuilder

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
	"github.com/gantryhq/gantry/slugrunner"
)

// Errors returned by Build, to be checked with errors.Is.
var (
	// ErrInvalidConfig is returned for a Config that fails Validate.
	ErrInvalidConfig = errors.New("invalid slugbuilder config")
	// ErrSource is returned when the source archive is missing or cannot
	// be unpacked safely.
	ErrSource = errors.New("bad source archive")
	// ErrBuildpackURL is returned for a buildpack URL that is neither an
	// https git URL nor the name of a built-in buildpack.
	ErrBuildpackURL = errors.New("refused buildpack URL")
	// ErrNoBuildpack is returned when no buildpack detects the app.
	ErrNoBuildpack = errors.New("no buildpack detected the app")
	// ErrProcfile is returned for a Procfile that cannot be parsed; it is
	// the slug runner's, whose parser the build uses.
	ErrProcfile = slugrunner.ErrProcfile
	// ErrCompile is returned when a buildpack fails to build the app.
	ErrCompile = errors.New("compile failed")
	// ErrSlugTooLarge is returned when the compressed slug is bigger than
	// Config.MaxSlugSize.
	ErrSlugTooLarge = errors.New("slug too large")
)

// Defaults of the zero Config fields.
const (
	DefaultMaxSlugSize    = 500 << 20
	DefaultCompileTimeout = 15 * time.Minute
)

// Config says what to build, where the inputs are and where the outputs go.
// Paths are file paths in the builder's file system.
type Config struct {
	// SourcePath is the source archive: a tar archive, optionally gzipped,
	// of the app's source tree. Required.
	SourcePath string
	// CacheInPath is the build cache of the previous build: a gzipped tar
	// archive restored into CACHE_DIR. A missing file means no cache yet.
	// Empty means no cache is restored.
	CacheInPath string
	// SlugPath receives the slug: a gzipped tar archive of AppDir. Its
	// directory is created. Required.
	SlugPath string
	// CacheOutPath receives the build cache after a successful build, when
	// it changed since it was restored. Empty means the cache is not saved.
	CacheOutPath string
	// ResultPath receives the JSON Result after a successful build. Empty
	// means the Result is only returned.
	ResultPath string
	// CacheDir is a directory kept from one build of the app to the next
	// (the app's build-cache volume on the building host): it is CACHE_DIR
	// itself, so nothing is restored or saved. It excludes CacheInPath and
	// CacheOutPath. Empty means CACHE_DIR is a new directory of WorkDir,
	// filled from CacheInPath.
	CacheDir string
	// Env holds the app's config vars. They are written to ENV_DIR, one file
	// per variable, for bin/compile; they are not in the environment of the
	// buildpacks. Names must match ^[A-Za-z_][A-Za-z0-9_]*$.
	Env map[string]string
	// BuildpackURL is a custom buildpack: an https git URL, with an optional
	// "#ref" naming a branch or tag, or the name of a built-in buildpack
	// ("gantry/go"). It replaces detection and any .buildpacks file. Empty
	// means detection.
	BuildpackURL string
	// MaxSlugSize is the largest compressed slug accepted, in bytes. Zero
	// means DefaultMaxSlugSize (500 MiB).
	MaxSlugSize int64
	// WorkDir holds CACHE_DIR, ENV_DIR, HOME of the buildpacks and fetched
	// buildpacks. Empty means a new temporary directory, removed when Build
	// returns.
	WorkDir string
	// AppDir is BUILD_DIR, the directory the source is unpacked into and
	// the buildpacks compile in; its contents become /app in the slug. It
	// must be empty or absent. Empty means types.AppDir ("/app").
	AppDir string
	// CompileTimeout bounds each buildpack's bin/compile. Zero means
	// DefaultCompileTimeout (15 minutes).
	CompileTimeout time.Duration
	// Environ is the environment of the buildpack programs (KEY=value
	// strings) and where the buildpacks look up settings such as GOPROXY
	// and PIP_INDEX_URL when no config var sets them. HOME is replaced by a
	// directory of WorkDir, so nothing lands in the slug by accident. Nil
	// means os.Environ().
	Environ []string
	// Out receives the human build output, line by line, Heroku style. Nil
	// means the output is discarded.
	Out io.Writer
	// HTTPClient fetches Go toolchains and probes Python package indexes.
	// Nil means a client with connect, TLS and response-header timeouts.
	HTTPClient *http.Client
	// Logger receives operational logs. Nil means no logs.
	Logger *slog.Logger
}

// configVarName matches the config var names the build accepts, as the
// controller does.
var configVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports whether c can be built.
func (c Config) Validate() error {
	var errs []error
	if c.SourcePath == "" {
		errs = append(errs, errors.New("source path is required"))
	}
	if c.SlugPath == "" {
		errs = append(errs, errors.New("slug path is required"))
	}
	for _, p := range []struct{ name, value string }{
		{"source path", c.SourcePath}, {"cache input path", c.CacheInPath},
		{"slug path", c.SlugPath}, {"cache output path", c.CacheOutPath}, {"result path", c.ResultPath},
	} {
		if p.value != "" && strings.ContainsRune(p.value, 0) {
			errs = append(errs, fmt.Errorf("%s contains a NUL byte", p.name))
		}
	}
	outs := map[string]string{}
	for _, p := range []struct{ name, value string }{
		{"slug path", c.SlugPath}, {"cache output path", c.CacheOutPath}, {"result path", c.ResultPath},
	} {
		if p.value == "" {
			continue
		}
		clean := filepath.Clean(p.value)
		if other, dup := outs[clean]; dup {
			errs = append(errs, fmt.Errorf("%s and %s are the same file %s", other, p.name, clean))
		}
		outs[clean] = p.name
	}
	for name := range c.Env {
		if err := checkEnvName(name); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BuildpackURL != "" {
		if _, err := parseBuildpackRef(c.BuildpackURL); err != nil {
			errs = append(errs, err)
		}
	}
	if c.CacheDir != "" {
		if c.CacheInPath != "" || c.CacheOutPath != "" {
			errs = append(errs, errors.New("a cache dir excludes the cache input and output paths"))
		}
		if !filepath.IsAbs(c.CacheDir) || strings.ContainsRune(c.CacheDir, 0) {
			errs = append(errs, fmt.Errorf("cache dir %q is not an absolute path", c.CacheDir))
		}
	}
	if c.MaxSlugSize < 0 {
		errs = append(errs, fmt.Errorf("max slug size %d is negative", c.MaxSlugSize))
	}
	if c.CompileTimeout < 0 {
		errs = append(errs, errors.New("compile timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func checkEnvName(name string) error {
	if !configVarName.MatchString(name) {
		return fmt.Errorf("config var name %q is not valid: use letters, digits and underscores, not starting with a digit", name)
	}
	return nil
}

// redactURL drops the user info and query of a URL, which may hold secrets,
// for logs and messages. It cuts them out of the text as given rather than
// re-encoding the URL, so that the user reads what they wrote (a space stays
// a space, not %20).
func redactURL(raw string) string {
	s := raw
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:i+3] + rest[at+1:]
		}
	}
	if q := strings.IndexByte(s, '?'); q >= 0 {
		frag := ""
		if h := strings.IndexByte(s[q:], '#'); h >= 0 {
			frag = s[q+h:]
		}
		s = s[:q] + "?..." + frag
	}
	return s
}

// withDefaults returns c with its zero fields filled in.
func (c Config) withDefaults() Config {
	if c.MaxSlugSize == 0 {
		c.MaxSlugSize = DefaultMaxSlugSize
	}
	if c.AppDir == "" {
		c.AppDir = slugtypes.AppDir
	}
	if c.CompileTimeout == 0 {
		c.CompileTimeout = DefaultCompileTimeout
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newHTTPClient()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Environ == nil {
		c.Environ = os.Environ()
	}
	return c
}

// newHTTPClient returns a client whose connections, TLS handshakes and
// response headers are bounded; whole transfers are bounded by a context
// deadline instead, since a toolchain may take long to download.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 2 * time.Minute
	t.ExpectContinueTimeout = time.Second
	return &http.Client{Transport: t}
}

// ConfigFromEnv reads the Config of `gantryd slugbuilder` from environ
// (KEY=value strings, as from os.Environ):
//
//   - SOURCE, CACHE_IN, SLUG_OUT, CACHE_OUT, RESULT_OUT: file paths, by
//     default the paths of package types (SourcePath, CacheInPath, SlugPath, CacheOutPath and
//     ResultPath). Set to the empty string, CACHE_IN, CACHE_OUT and
//     RESULT_OUT turn off restoring the cache, saving it and writing the
//     result.
//   - CACHE_DIR: Config.CacheDir; with it, CACHE_IN and CACHE_OUT default
//     to empty.
//   - CONFIG_VAR_<NAME>=value: the config var NAME (see types.EnvConfigVarPrefix).
//   - BUILDPACK_URL, SLUG_MAX_SIZE (bytes), COMPILE_TIMEOUT (a Go duration
//     such as "20m").
//
// Environ becomes environ without the variables above, so the buildpacks
// see neither the build's settings nor the config vars (those are in
// ENV_DIR); settings such as GOPROXY, GOFLAGS or PIP_INDEX_URL stay in it.
// AppDir and WorkDir are the container's (types.AppDir, types.WorkDir); Out and Logger
// are left for the caller. The result is validated.
func ConfigFromEnv(environ []string) (Config, error) {
	env := make(map[string]string, len(environ))
	c := Config{Env: map[string]string{}, Environ: []string{}, AppDir: slugtypes.AppDir, WorkDir: slugtypes.WorkDir}
	var errs []error
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(k, slugtypes.EnvConfigVarPrefix); ok {
			if err := checkEnvName(name); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
				continue
			}
			c.Env[name] = v
			continue
		}
		switch k {
		case slugtypes.EnvSource, slugtypes.EnvCacheIn, slugtypes.EnvSlugOut, slugtypes.EnvCacheOut, slugtypes.EnvResultOut, slugtypes.EnvCacheDir,
			slugtypes.EnvBuildpackURL, slugtypes.EnvSlugMaxSize, slugtypes.EnvCompileTimeout:
			env[k] = v
		default:
			c.Environ = append(c.Environ, kv)
		}
	}
	path := func(name, def string) string {
		if v, ok := env[name]; ok {
			return v
		}
		return def
	}
	c.SourcePath = path(slugtypes.EnvSource, slugtypes.SourcePath)
	c.CacheDir = env[slugtypes.EnvCacheDir]
	cacheIn, cacheOut := slugtypes.CacheInPath, slugtypes.CacheOutPath
	if c.CacheDir != "" {
		cacheIn, cacheOut = "", ""
	}
	c.CacheInPath = path(slugtypes.EnvCacheIn, cacheIn)
	c.SlugPath = path(slugtypes.EnvSlugOut, slugtypes.SlugPath)
	c.CacheOutPath = path(slugtypes.EnvCacheOut, cacheOut)
	c.ResultPath = path(slugtypes.EnvResultOut, slugtypes.ResultPath)
	c.BuildpackURL = env[slugtypes.EnvBuildpackURL]
	if s := env[slugtypes.EnvSlugMaxSize]; s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a size in bytes", slugtypes.EnvSlugMaxSize, s))
		}
		c.MaxSlugSize = n
	}
	if s := env[slugtypes.EnvCompileTimeout]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a positive duration", slugtypes.EnvCompileTimeout, s))
		}
		c.CompileTimeout = d
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
