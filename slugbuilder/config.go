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

// The file layout of a build job in the builder container. The host agent
// mounts the inputs read-only under InDir and copies the outputs out of
// OutDir after the job exits with status 0. The build writes only OutDir,
// AppDir and a temporary work directory, so it runs as the builder image's
// unprivileged user. InDir and OutDir are two directories of /tmp rather
// than two of one /tmp/gantry: Docker creates the missing parents of mount
// points as directories owned by root, in which that user could not create
// OutDir, while anyone may create a directory in /tmp.
const (
	// InDir holds the inputs.
	InDir = "/tmp/gantry-in"
	// OutDir holds the outputs; Build creates it.
	OutDir = "/tmp/gantry-out"

	// SourcePath is the default source archive: a tar archive, optionally
	// gzipped, of the app's source tree.
	SourcePath = InDir + "/source.tgz"
	// CacheInPath is the default previous build cache; a missing file means
	// no cache yet.
	CacheInPath = InDir + "/cache.tgz"
	// SlugPath is the default slug: a gzipped tar archive of AppDir.
	SlugPath = OutDir + "/slug.tgz"
	// CacheOutPath is the default new build cache, written only when the
	// cache changed (Result.CacheSaved).
	CacheOutPath = OutDir + "/cache.tgz"
	// ResultPath is the default JSON Result.
	ResultPath = OutDir + "/result.json"
	// AppDir is BUILD_DIR in the container: the app is built in place and
	// becomes /app of the slug.
	AppDir = "/app"
	// WorkDir is the work directory in the container (CACHE_DIR and the
	// rest, see Config.WorkDir). Like AppDir it is the same path in every
	// build: tools such as the go command key their caches by path, so a
	// build cache restored at the same place stays valid.
	WorkDir = "/tmp/gantry-work"
	// CacheDir is where build jobs mount the app's build-cache volume of
	// the building host (see Config.CacheDir). The images have it, owned
	// by the app user, so that a new volume is the build's to write.
	CacheDir = "/var/cache/gantry-build"
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
	// must be empty or absent. Empty means AppDir ("/app").
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
		c.AppDir = AppDir
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

// Environment variables read by ConfigFromEnv.
const (
	EnvSource         = "SOURCE"
	EnvCacheIn        = "CACHE_IN"
	EnvSlugOut        = "SLUG_OUT"
	EnvCacheOut       = "CACHE_OUT"
	EnvResultOut      = "RESULT_OUT"
	EnvCacheDir       = "CACHE_DIR"
	EnvBuildpackURL   = "BUILDPACK_URL"
	EnvSlugMaxSize    = "SLUG_MAX_SIZE"
	EnvCompileTimeout = "COMPILE_TIMEOUT"
	// EnvConfigVarPrefix starts the variables that carry the app's config
	// vars: CONFIG_VAR_DATABASE_URL=postgres://... is the config var
	// DATABASE_URL, written to ENV_DIR/DATABASE_URL.
	EnvConfigVarPrefix = "CONFIG_VAR_"
)

// ConfigFromEnv reads the Config of `gantryd slugbuilder` from environ
// (KEY=value strings, as from os.Environ):
//
//   - SOURCE, CACHE_IN, SLUG_OUT, CACHE_OUT, RESULT_OUT: file paths, by
//     default SourcePath, CacheInPath, SlugPath, CacheOutPath and
//     ResultPath. Set to the empty string, CACHE_IN, CACHE_OUT and
//     RESULT_OUT turn off restoring the cache, saving it and writing the
//     result.
//   - CACHE_DIR: Config.CacheDir; with it, CACHE_IN and CACHE_OUT default
//     to empty.
//   - CONFIG_VAR_<NAME>=value: the config var NAME (see EnvConfigVarPrefix).
//   - BUILDPACK_URL, SLUG_MAX_SIZE (bytes), COMPILE_TIMEOUT (a Go duration
//     such as "20m").
//
// Environ becomes environ without the variables above, so the buildpacks
// see neither the build's settings nor the config vars (those are in
// ENV_DIR); settings such as GOPROXY, GOFLAGS or PIP_INDEX_URL stay in it.
// AppDir and WorkDir are the container's (AppDir, WorkDir); Out and Logger
// are left for the caller. The result is validated.
func ConfigFromEnv(environ []string) (Config, error) {
	env := make(map[string]string, len(environ))
	c := Config{Env: map[string]string{}, Environ: []string{}, AppDir: AppDir, WorkDir: WorkDir}
	var errs []error
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(k, EnvConfigVarPrefix); ok {
			if err := checkEnvName(name); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
				continue
			}
			c.Env[name] = v
			continue
		}
		switch k {
		case EnvSource, EnvCacheIn, EnvSlugOut, EnvCacheOut, EnvResultOut, EnvCacheDir,
			EnvBuildpackURL, EnvSlugMaxSize, EnvCompileTimeout:
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
	c.SourcePath = path(EnvSource, SourcePath)
	c.CacheDir = env[EnvCacheDir]
	cacheIn, cacheOut := CacheInPath, CacheOutPath
	if c.CacheDir != "" {
		cacheIn, cacheOut = "", ""
	}
	c.CacheInPath = path(EnvCacheIn, cacheIn)
	c.SlugPath = path(EnvSlugOut, SlugPath)
	c.CacheOutPath = path(EnvCacheOut, cacheOut)
	c.ResultPath = path(EnvResultOut, ResultPath)
	c.BuildpackURL = env[EnvBuildpackURL]
	if s := env[EnvSlugMaxSize]; s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a size in bytes", EnvSlugMaxSize, s))
		}
		c.MaxSlugSize = n
	}
	if s := env[EnvCompileTimeout]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a positive duration", EnvCompileTimeout, s))
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

// Result describes a built slug.
type Result struct {
	// SlugDigest is "sha256:<hex>" of the slug file (compressed).
	SlugDigest string `json:"slug_digest"`
	// SlugSize is the size of the slug file in bytes.
	SlugSize int64 `json:"slug_size"`
	// ProcessTypes maps process type to command: the buildpacks' default
	// process types (bin/release), overridden by the Procfile's.
	ProcessTypes map[string]string `json:"process_types"`
	// Buildpacks names the buildpacks that built the app, in order.
	Buildpacks []string `json:"buildpacks"`
	// CacheSaved is set when a new build cache was written to
	// Config.CacheOutPath; otherwise the previous cache is still current
	// (or there is none) and no file was written there.
	CacheSaved bool `json:"cache_saved"`
}
