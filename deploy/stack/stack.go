package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// Image repositories built by this package.
const (
	StackImage   = "gantry/stack"
	BuilderImage = "gantry/builder"
)

// Image labels set on both images.
const (
	// LabelVersion holds the version the image was built as.
	LabelVersion = "gantry.stack.version"
	// LabelImage is "stack" or "builder".
	LabelImage = "gantry.stack.image"
)

// Suite is the Debian release the images are made of.
const Suite = "bookworm"

// Sentinel errors; test with errors.Is.
var (
	ErrInvalidConfig = errors.New("stack: invalid config")
	ErrNoDebootstrap = errors.New(`stack: debootstrap is not installed; install it with "apt-get install -y debootstrap" (make up and .ci/run do this)`)
	ErrNotRoot       = errors.New("stack: building the images needs root (debootstrap, chroot)")
	ErrNoMirror      = errors.New("stack: no Debian mirror in the apt configuration")
	ErrNoBaseImage   = errors.New("stack: base image missing")
)

// Packages of the images, on top of the minbase variant.
var (
	stackPackages   = []string{"ca-certificates", "tzdata", "libssl3", "zlib1g", "libstdc++6", "netbase", "procps", "python3"}
	builderPackages = []string{"build-essential", "git", "curl", "pkg-config", "python3-venv"}
)

// Timeouts of the external calls.
const (
	debootstrapTimeout = 15 * time.Minute
	aptTimeout         = 15 * time.Minute
	chrootTimeout      = 2 * time.Minute
	importTimeout      = 10 * time.Minute
	dockerTimeout      = 30 * time.Second
	removeTimeout      = 2 * time.Minute
	lockTimeout        = 30 * time.Minute // waiting for another build
)

// Host paths read by a build.
const (
	aptConfigDir = "/etc/apt"
	hostCABundle = "/etc/ssl/certs/ca-certificates.crt"
)

// tagPattern is the syntax of a Docker image tag.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// DefaultVersion is the version of the base images this gantryd builds and
// runs apps on. Bump it when the recipe of either image changes.
const DefaultVersion = "bookworm-2"

// PostgresRef returns the reference of the PostgreSQL image of version,
// e.g. "gantry/postgres:0.1.0".
func PostgresRef(version string) string { return PostgresImage + ":" + version }

// StackRef returns the reference of the stack image of version, e.g.
// "gantry/stack:0.1.0".
func StackRef(version string) string { return StackImage + ":" + version }

// BuilderRef returns the reference of the builder image of version, e.g.
// "gantry/builder:0.1.0".
func BuilderRef(version string) string { return BuilderImage + ":" + version }

// Config configures Build.
type Config struct {
	// Version is the image tag, e.g. "0.1.0"; required. The images are
	// StackRef(Version), BuilderRef(Version) and PostgresRef(Version).
	Version string
	// Force rebuilds the images even when they exist. Zero: a build with
	// all images present does nothing, and one with only the PostgreSQL
	// image missing builds only that.
	Force bool
	// WorkDir is the directory under which the scratch root file system is
	// made (about 1 GB); the scratch directory is removed afterwards.
	// "" means the system temporary directory.
	WorkDir string
	// CacheDir keeps the downloaded .deb files between builds, so that a
	// rebuild downloads nothing new. "" means <user cache dir>/gantry/stack
	// (os.UserCacheDir, e.g. /root/.cache/gantry/stack).
	CacheDir string
	// Docker is the engine the images are imported into; required.
	Docker *client.Client
	// Progress receives human progress lines ("-----> ..."); nil discards
	// them.
	Progress io.Writer
	// Logger receives structured logs, the commands' output at debug level;
	// nil discards them.
	Logger *slog.Logger
}

// Validate reports whether c can be used by Build.
func (c Config) Validate() error {
	var errs []error
	if c.Version == "" {
		errs = append(errs, errors.New("version is required"))
	} else if !tagPattern.MatchString(c.Version) {
		errs = append(errs, fmt.Errorf("version %q is not a valid image tag", c.Version))
	}
	if c.Docker == nil {
		errs = append(errs, errors.New("docker client is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Exists reports whether all images of version (stack, builder,
// PostgreSQL) are present in the engine.
func Exists(ctx context.Context, docker *client.Client, version string) (bool, error) {
	for _, ref := range []string{StackRef(version), BuilderRef(version), PostgresRef(version)} {
		_, ok, err := inspect(ctx, docker, ref)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// missing reports which images of the build's version must be built: the
// stack and builder images (always together) and the PostgreSQL image.
func (b *build) missing(ctx context.Context) (base, postgres bool, err error) {
	if b.cfg.Force {
		return true, true, nil
	}
	have := map[string]bool{}
	for _, ref := range []string{StackRef(b.cfg.Version), BuilderRef(b.cfg.Version), PostgresRef(b.cfg.Version)} {
		_, ok, err := inspect(ctx, b.cfg.Docker, ref)
		if err != nil {
			return false, false, err
		}
		have[ref] = ok
	}
	base = !have[StackRef(b.cfg.Version)] || !have[BuilderRef(b.cfg.Version)]
	return base, base || !have[PostgresRef(b.cfg.Version)], nil
}

// inspect returns the image ref and whether it exists.
func inspect(ctx context.Context, docker *client.Client, ref string) (image.InspectResponse, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	img, err := docker.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return image.InspectResponse{}, false, nil
	}
	if err != nil {
		return image.InspectResponse{}, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img, true, nil
}

// Build makes the stack, builder and PostgreSQL images of cfg.Version. It
// is idempotent: when the images exist and cfg.Force is false it says so
// and does nothing. Building the stack and builder images needs root and
// debootstrap; the PostgreSQL image is built by the engine on top of the
// stack image.
func Build(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	b, err := newBuild(cfg)
	if err != nil {
		return err
	}
	return b.run(ctx)
}

// build is one run of Build.
type build struct {
	cfg         Config
	log         *slog.Logger
	progress    io.Writer
	cacheDir    string
	debootstrap string
	start       time.Time
}

func newBuild(cfg Config) (*build, error) {
	b := &build{cfg: cfg, log: cfg.Logger, progress: cfg.Progress, cacheDir: cfg.CacheDir, start: time.Now()}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.progress == nil {
		b.progress = io.Discard
	}
	if b.cacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("stack: default cache dir: %w", err)
		}
		b.cacheDir = filepath.Join(dir, "gantry", "stack")
	}
	dir, err := filepath.Abs(b.cacheDir)
	if err != nil {
		return nil, fmt.Errorf("stack: cache dir: %w", err)
	}
	b.cacheDir = dir
	return b, nil
}

func (b *build) run(ctx context.Context) error {
	stackRef, builderRef, postgresRef := StackRef(b.cfg.Version), BuilderRef(b.cfg.Version), PostgresRef(b.cfg.Version)
	base, postgres, err := b.missing(ctx)
	if err != nil {
		return err
	}
	if !base && !postgres {
		b.say("%s, %s and %s already exist; nothing to do", stackRef, builderRef, postgresRef)
		return nil
	}
	if base {
		// Fail before waiting for the lock.
		if err := b.canBuildBase(); err != nil {
			return err
		}
	}
	mirror, err := findMirror(aptConfigDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(b.cacheDir, 0o755); err != nil {
		return fmt.Errorf("stack: cache dir: %w", err)
	}
	unlock, err := b.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	// Another build may have made the images while this one waited.
	if base, postgres, err = b.missing(ctx); err != nil {
		return err
	}
	if !base && !postgres {
		b.say("%s, %s and %s already exist; nothing to do", stackRef, builderRef, postgresRef)
		return nil
	}
	b.log.Info("stack build", "version", b.cfg.Version, "force", b.cfg.Force, "work_dir", b.cfg.WorkDir,
		"cache_dir", b.cacheDir, "mirror", mirror, "suite", Suite, "base", base, "postgres", postgres)
	if base {
		if err := b.buildBase(ctx, mirror); err != nil {
			return err
		}
	}
	if err := b.step(fmt.Sprintf("Building %s (PostgreSQL %s from %s)", postgresRef, PostgresMajor, mirror), func() (string, error) {
		return b.buildPostgres(ctx, mirror)
	}); err != nil {
		return err
	}
	b.say("Done in %.1fs", time.Since(b.start).Seconds())
	return nil
}

// buildBase makes the stack and builder images from a debootstrapped root
// file system and tags them.
func (b *build) buildBase(ctx context.Context, mirror string) error {
	if err := b.canBuildBase(); err != nil {
		return err
	}
	stackRef, builderRef := StackRef(b.cfg.Version), BuilderRef(b.cfg.Version)
	b.say("Building %s and %s", stackRef, builderRef)
	scratch, err := os.MkdirTemp(b.cfg.WorkDir, "gantry-stack-")
	if err != nil {
		return fmt.Errorf("stack: scratch dir: %w", err)
	}
	defer func() {
		if err := removeScratch(scratch); err != nil {
			b.log.Error("remove scratch dir", "dir", scratch, "err", err)
		}
	}()
	rootfs := filepath.Join(scratch, "rootfs")

	var imported []string // image IDs to remove unless tagged
	defer func() {
		for _, id := range imported {
			b.removeImage(ctx, id)
		}
	}()

	if err := b.step(fmt.Sprintf("Bootstrapping Debian %s (minbase) from %s", Suite, mirror), func() (string, error) {
		return "", b.bootstrap(ctx, rootfs, mirror)
	}); err != nil {
		return err
	}
	if err := b.step("Configuring the stack (user app, CA certificates, dpkg excludes)", func() (string, error) {
		return b.configure(ctx, rootfs)
	}); err != nil {
		return err
	}
	var stackID, builderID string
	if err := b.step("Importing "+stackRef, func() (string, error) {
		stackID, err = b.importRootfs(ctx, rootfs, "stack")
		if err != nil {
			return "", err
		}
		imported = append(imported, stackID)
		return b.describe(ctx, stackID), nil
	}); err != nil {
		return err
	}
	if err := b.step("Installing build tools ("+strings.Join(builderPackages, " ")+")", func() (string, error) {
		return "", b.installBuildTools(ctx, rootfs)
	}); err != nil {
		return err
	}
	if err := b.step("Importing "+builderRef, func() (string, error) {
		builderID, err = b.importRootfs(ctx, rootfs, "builder")
		if err != nil {
			return "", err
		}
		imported = append(imported, builderID)
		return b.describe(ctx, builderID), nil
	}); err != nil {
		return err
	}

	// Tag both only now, so that a failed build leaves the old images.
	old := map[string]string{}
	for _, ref := range []string{stackRef, builderRef} {
		img, ok, err := inspect(ctx, b.cfg.Docker, ref)
		if err != nil {
			return err
		}
		if ok {
			old[ref] = img.ID
		}
	}
	for ref, id := range map[string]string{stackRef: stackID, builderRef: builderID} {
		if err := b.tag(ctx, id, ref); err != nil {
			return err
		}
		imported = slices.DeleteFunc(imported, func(i string) bool { return i == id })
	}
	for ref, id := range old {
		if id != stackID && id != builderID {
			b.log.Info("remove replaced image", "ref", ref, "id", id)
			b.removeImage(ctx, id)
		}
	}
	b.say("Built %s and %s", stackRef, builderRef)
	return nil
}

// canBuildBase fails with ErrNotRoot or ErrNoDebootstrap when the stack and
// builder images cannot be built here, and sets b.debootstrap.
func (b *build) canBuildBase() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return b.findDebootstrap()
}

// findDebootstrap sets b.debootstrap or fails with ErrNoDebootstrap.
func (b *build) findDebootstrap() error {
	for _, p := range []string{"debootstrap", "/usr/sbin/debootstrap"} {
		if path, err := exec.LookPath(p); err == nil {
			b.debootstrap = path
			return nil
		}
	}
	return ErrNoDebootstrap
}

// say writes one "-----> " progress line.
func (b *build) say(format string, args ...any) {
	fmt.Fprintf(b.progress, "-----> "+format+"\n", args...)
}

// step runs fn as one progress step and reports its elapsed time and the
// note fn returns.
func (b *build) step(title string, fn func() (string, error)) error {
	b.say("%s...", title)
	start := time.Now()
	note, err := fn()
	elapsed := time.Since(start).Seconds()
	if err != nil {
		fmt.Fprintf(b.progress, "       failed after %.1fs\n", elapsed)
		return err
	}
	if note != "" {
		note = ", " + note
	}
	fmt.Fprintf(b.progress, "       done in %.1fs%s\n", elapsed, note)
	return nil
}

// describe returns "<short id>, <size> MB" of image id for progress lines.
func (b *build) describe(ctx context.Context, id string) string {
	short := strings.TrimPrefix(id, "sha256:")
	short = short[:min(len(short), 12)]
	img, ok, err := inspect(ctx, b.cfg.Docker, id)
	if err != nil || !ok {
		return short
	}
	return fmt.Sprintf("%s, %d MB", short, img.Size/1e6)
}

// tag points ref at image id.
func (b *build) tag(ctx context.Context, id, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := b.cfg.Docker.ImageTag(ctx, id, ref); err != nil {
		return fmt.Errorf("tag %s as %s: %w", id, ref, err)
	}
	return nil
}

// removeImage removes image id, also after ctx is cancelled; an image still
// used by containers or other tags stays, which is logged.
func (b *build) removeImage(ctx context.Context, id string) {
	removeImage(ctx, b.cfg.Docker, b.log, id)
}

// removeImage removes image id, also after ctx is cancelled; an image still
// used by containers or other tags stays, which is logged.
func removeImage(ctx context.Context, docker *client.Client, log *slog.Logger, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	_, err := docker.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
	case cerrdefs.IsConflict(err):
		log.Info("image still in use; left in place", "id", id, "err", err)
	default:
		log.Warn("remove image", "id", id, "err", err)
	}
}
