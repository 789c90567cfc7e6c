package stack

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"time"

	dockerbuild "github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// PlatformImage is the repository of the image the platform's own
// containers run: the builder image plus the gantryd binary of the host.
// The builder's git is what the git receiver's container runs for each
// push; its other tools cost no disk, since the layers are the builder's.
const PlatformImage = "gantry/platform"

// Labels of the platform image.
const (
	// LabelPlatformVersion holds the version of the gantryd in the image.
	LabelPlatformVersion = "gantry.platform.version"
	// LabelPlatformDigest holds "sha256:<hex>" of the gantryd binary.
	LabelPlatformDigest = "gantry.platform.digest"
	// LabelPlatformBase holds the ID of the builder image the platform
	// image was made from: a rebuilt builder image makes a new platform
	// image.
	LabelPlatformBase = "gantry.platform.base"
)

// platformBinary is where gantryd is in the platform image.
const platformBinary = "/usr/local/bin/gantryd"

// platformBuildTimeout bounds the build of the platform image: a copy of
// one binary onto the builder image.
const platformBuildTimeout = 5 * time.Minute

// platformDockerfile makes the platform image; the verbs are the builder
// image and the labels.
const platformDockerfile = `FROM %s
COPY gantryd ` + platformBinary + `
ENTRYPOINT ["` + platformBinary + `"]
LABEL %s
`

// tagUnsafe matches the characters a version may hold that an image tag may
// not.
var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// maxTagVersion is how much of the version goes into a platform tag, which
// also holds "-" and 12 digits of the digest (tags have at most 128
// characters).
const maxTagVersion = 100

// PlatformRef returns the reference of the platform image of a gantryd of
// version whose binary has digest ("sha256:<hex>"), e.g.
// "gantry/platform:v0.3.0-1a2b3c4d5e6f". A binary that changes makes a new
// tag even when the version string does not (a "dev" or "-dirty" build).
func PlatformRef(version, digest string) string {
	v := tagUnsafe.ReplaceAllString(version, "-")
	if len(v) > maxTagVersion {
		v = v[:maxTagVersion]
	}
	if v == "" || v[0] == '.' || v[0] == '-' {
		v = "v" + v
	}
	hexDigits := digest[len("sha256:"):]
	return PlatformImage + ":" + v + "-" + hexDigits[:12]
}

// PlatformConfig configures EnsurePlatformImage.
type PlatformConfig struct {
	// Version is the version of the gantryd binary, e.g. "v0.3.0"; required.
	// It goes into the tag and the LabelPlatformVersion label.
	Version string
	// Binary is the path of the gantryd binary copied into the image; it
	// should be static (CGO_ENABLED=0). "" means the running executable
	// (os.Executable).
	Binary string
	// StackVersion is the version of the builder image the platform image
	// is made from. "" means DefaultVersion.
	StackVersion string
	// Docker is the engine that builds and holds the image; required.
	Docker *client.Client
	// Progress receives human progress lines ("-----> ..."); nil discards
	// them.
	Progress io.Writer
	// Logger receives structured logs, the build output at debug level; nil
	// discards them.
	Logger *slog.Logger
}

// Validate reports whether c can be used by EnsurePlatformImage.
func (c PlatformConfig) Validate() error {
	var errs []error
	if c.Version == "" {
		errs = append(errs, errors.New("version is required"))
	}
	if c.StackVersion != "" && !tagPattern.MatchString(c.StackVersion) {
		errs = append(errs, fmt.Errorf("stack version %q is not a valid image tag", c.StackVersion))
	}
	if c.Docker == nil {
		errs = append(errs, errors.New("docker client is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// EnsurePlatformImage returns the reference of the platform image of the
// gantryd binary cfg.Binary, building it first when it is missing: the
// builder image (which has git, for the git receiver) with the binary as
// /usr/local/bin/gantryd, its entrypoint, and labels giving its version and
// digest. The tag holds the version and the binary's digest (PlatformRef),
// so that an upgraded binary makes a new image; when that image exists and
// was made from the current builder image, nothing is built. The builder
// image must exist (gantryd stack build).
func EnsurePlatformImage(ctx context.Context, cfg PlatformConfig) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	binary := cfg.Binary
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("platform image: find the gantryd binary: %w", err)
		}
		binary = exe
	}
	stackVersion := cfg.StackVersion
	if stackVersion == "" {
		stackVersion = DefaultVersion
	}
	base := BuilderRef(stackVersion)

	digest, err := fileDigest(binary)
	if err != nil {
		return "", fmt.Errorf("platform image: %w", err)
	}
	ref := PlatformRef(cfg.Version, digest)
	baseImg, ok, err := inspect(ctx, cfg.Docker, base)
	if err != nil {
		return "", fmt.Errorf("platform image: %w", err)
	}
	if !ok {
		return "", fmt.Errorf("platform image: %w: %s (run gantryd stack build)", ErrNoBaseImage, base)
	}
	old, ok, err := inspect(ctx, cfg.Docker, ref)
	if err != nil {
		return "", fmt.Errorf("platform image: %w", err)
	}
	if ok && old.Config != nil && old.Config.Labels[LabelPlatformDigest] == digest && old.Config.Labels[LabelPlatformBase] == baseImg.ID {
		fmt.Fprintf(progress, "-----> %s already exists; nothing to do\n", ref)
		return ref, nil
	}
	if !isStatic(binary) {
		log.Warn("the gantryd binary is not static; build it with CGO_ENABLED=0 (make build) so that it runs in any image", "binary", binary)
	}

	log.Info("build platform image", "ref", ref, "binary", binary, "digest", digest, "base", base)
	fmt.Fprintf(progress, "-----> Building %s from %s (%s)...\n", ref, binary, digest[:len("sha256:")+12])
	start := time.Now()
	id, err := imageBuild(ctx, cfg.Docker, log, platformBuildTimeout, []contextFile{
		{Name: "Dockerfile", Mode: 0o644, Data: fmt.Appendf(nil, platformDockerfile, base, dockerfileLabels(map[string]string{
			LabelPlatformVersion: cfg.Version, LabelPlatformDigest: digest, LabelPlatformBase: baseImg.ID,
		}))},
		{Name: "gantryd", Mode: 0o755, Path: binary},
	}, dockerbuild.ImageBuildOptions{Tags: []string{ref}})
	if err != nil {
		fmt.Fprintf(progress, "       failed after %.1fs\n", time.Since(start).Seconds())
		return "", fmt.Errorf("platform image %s: %w", ref, err)
	}
	if ok && old.ID != id {
		log.Info("remove replaced platform image", "ref", ref, "id", old.ID)
		removeImage(ctx, cfg.Docker, log, old.ID)
	}
	short := id[len("sha256:"):]
	fmt.Fprintf(progress, "       done in %.1fs, %s\n", time.Since(start).Seconds(), short[:12])
	return ref, nil
}

// fileDigest returns "sha256:<hex>" of the file at path.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// isStatic reports whether the ELF executable at path needs no dynamic
// loader. A file that is not ELF counts as static: the build copies it
// anyway and running it tells.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
