// Package types is the wire contract of `gantryd slugbuilder`: the paths of
// a build job's inputs and outputs in the builder container, the
// environment variables that configure it and the JSON Result it writes.
// The controller starts build jobs with these alone, without linking the
// builder itself (package slugbuilder).
package types

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
	// OutDir holds the outputs; the build creates it.
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
	// rest, see slugbuilder.Config.WorkDir). Like AppDir it is the same
	// path in every build: tools such as the go command key their caches
	// by path, so a build cache restored at the same place stays valid.
	WorkDir = "/tmp/gantry-work"
	// CacheDir is where build jobs mount the app's build-cache volume of
	// the building host (see slugbuilder.Config.CacheDir). The images have
	// it, owned by the app user, so that a new volume is the build's to
	// write.
	CacheDir = "/var/cache/gantry-build"
)

// Environment variables that configure `gantryd slugbuilder` (see
// slugbuilder.ConfigFromEnv).
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

// Result describes a built slug; a successful build writes it as JSON to
// ResultPath.
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
	// CacheSaved is set when a new build cache was written to the cache
	// output path; otherwise the previous cache is still current (or there
	// is none) and no file was written there.
	CacheSaved bool `json:"cache_saved"`
}
