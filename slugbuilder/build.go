package slugbuilder

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
	"github.com/gantryhq/gantry/slugrunner"
)

// Build unpacks the source, runs the buildpacks, applies .slugignore and
// writes the slug, the build cache and the Result. Its progress goes to
// cfg.Out as it happens; a failure is also printed there, as " !     "
// lines, before Build returns it. A failed build writes no output file.
func Build(ctx context.Context, cfg Config) (*slugtypes.Result, error) {
	w := cfg.Out
	if w == nil {
		w = io.Discard
	}
	out := newLineWriter(w)
	if err := cfg.Validate(); err != nil {
		out.fail(err.Error())
		return nil, err
	}
	b := &builder{cfg: cfg.withDefaults(), out: out}
	b.log = b.cfg.Logger
	start := time.Now()
	res, err := b.build(ctx)
	out.Flush()
	if err != nil {
		out.fail(err.Error())
		b.log.Error("slug build failed", "err", err, "duration", time.Since(start))
		return nil, err
	}
	b.log.Info("slug built", "digest", res.SlugDigest, "size", res.SlugSize,
		"buildpacks", res.Buildpacks, "cache_saved", res.CacheSaved, "duration", time.Since(start))
	return res, nil
}

type builder struct {
	cfg Config
	out *lineWriter
	log *slog.Logger
}

func (b *builder) build(ctx context.Context) (*slugtypes.Result, error) {
	cfg := b.cfg
	b.log.Info("slug build",
		"source", cfg.SourcePath, "cache_in", cfg.CacheInPath, "slug_out", cfg.SlugPath,
		"cache_out", cfg.CacheOutPath, "result_out", cfg.ResultPath,
		"buildpack_url", redactURL(cfg.BuildpackURL), "config_vars", len(cfg.Env),
		"max_slug_size", cfg.MaxSlugSize, "compile_timeout", cfg.CompileTimeout,
		"app_dir", cfg.AppDir, "work_dir", cfg.WorkDir, "uid", os.Getuid())

	s, cleanup, err := b.prepare()
	if err != nil {
		return nil, err
	}
	defer cleanup()

	if err := b.unpackSource(s.buildDir); err != nil {
		return nil, err
	}
	if _, _, err := readProcfile(s.buildDir); err != nil {
		return nil, err
	}
	restored := ""
	if b.cfg.CacheDir != "" {
		b.useCacheDir(s.cacheDir)
	} else {
		restored = b.restoreCache(s.cacheDir)
	}

	packs, err := b.selectBuildpacks(ctx, s)
	if err != nil {
		return nil, err
	}
	res := &slugtypes.Result{}
	defaults := map[string]string{}
	for _, p := range packs {
		if !p.detected {
			kind, ok, err := p.detect(ctx, s)
			if err != nil {
				return nil, fmt.Errorf("detect %s: %w", p.name(), err)
			}
			if !ok {
				return nil, fmt.Errorf("%w: the app is not compatible with buildpack %s (its detect said no)", ErrNoBuildpack, redactURL(p.name()))
			}
			b.out.step("%s app detected", kind)
		}
		done := b.timed("compile " + p.name())
		err := p.compile(ctx, s)
		done()
		s.out.Flush()
		if err != nil {
			return nil, fmt.Errorf("%w: buildpack %s: %w", ErrCompile, p.name(), err)
		}
		types, err := p.release(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%w: buildpack %s: %w", ErrCompile, p.name(), err)
		}
		maps.Copy(defaults, types)
		res.Buildpacks = append(res.Buildpacks, p.name())
	}

	procfile, found, err := readProcfile(s.buildDir)
	if err != nil {
		return nil, err
	}
	b.out.step("Discovering process types")
	var fromDefaults []string
	res.ProcessTypes, fromDefaults = mergeProcessTypes(defaults, procfile)
	if found {
		b.out.info("Procfile declares types -> %s", typeList(procfile))
	}
	if len(fromDefaults) > 0 {
		b.out.info("Default types for buildpack -> %s", strings.Join(fromDefaults, ", "))
	}
	if len(res.ProcessTypes) == 0 {
		b.out.info("No process types: add a Procfile (such as \"web: bin/server\") to run the app")
	}

	if err := b.applySlugignore(s.buildDir); err != nil {
		return nil, err
	}

	b.out.step("Compressing...")
	done := b.timed("write slug")
	stats, err := writeArchiveFile(ctx, cfg.SlugPath, s.buildDir, gzip.DefaultCompression, cfg.MaxSlugSize,
		func(name, target string) error {
			return fmt.Errorf("the slug cannot hold the symbolic link %s -> %s: it leads outside the app", name, target)
		})
	done()
	var tooLarge *tooLargeError
	if errors.As(err, &tooLarge) {
		return nil, fmt.Errorf("%w: %w; list what the app does not need at run time in .slugignore", ErrSlugTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("write slug: %w", err)
	}
	res.SlugDigest, res.SlugSize = stats.digest, stats.size
	b.out.step("Compiled slug size is %s", humanSize(stats.size))

	res.CacheSaved = b.saveCache(ctx, s.cacheDir, restored)

	if cfg.ResultPath != "" {
		body, err := json.Marshal(res)
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(cfg.ResultPath, func(f *os.File) error {
			_, err := f.Write(append(body, '\n'))
			return err
		}); err != nil {
			// A slug without its result is no build.
			os.Remove(cfg.SlugPath)
			if res.CacheSaved {
				os.Remove(cfg.CacheOutPath)
			}
			return nil, fmt.Errorf("write build result: %w", err)
		}
	}
	return res, nil
}

// mergeProcessTypes returns the process types of the slug: the default
// process types of the buildpacks, overridden by the Procfile's. fromDefaults
// lists, sorted, the types that only the defaults declare.
func mergeProcessTypes(defaults, procfile map[string]string) (types map[string]string, fromDefaults []string) {
	types = make(map[string]string, len(defaults)+len(procfile))
	maps.Copy(types, defaults)
	maps.Copy(types, procfile)
	for t := range defaults {
		if _, ok := procfile[t]; !ok {
			fromDefaults = append(fromDefaults, t)
		}
	}
	slices.Sort(fromDefaults)
	return types, fromDefaults
}

// prepare makes the directories of the build: BUILD_DIR (AppDir, which
// must be empty), and CACHE_DIR, ENV_DIR, HOME and the buildpack checkouts
// under WorkDir, and writes the config vars to ENV_DIR. cleanup removes
// WorkDir when prepare created it.
func (b *builder) prepare() (*stage, func(), error) {
	cleanup := func() {}
	work := b.cfg.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "slugbuilder-")
		if err != nil {
			return nil, nil, fmt.Errorf("make work dir: %w", err)
		}
		work = dir
		cleanup = func() {
			if err := os.RemoveAll(dir); err != nil {
				b.log.Warn("remove work dir", "dir", dir, "err", err)
			}
		}
	}
	fail := func(err error) (*stage, func(), error) {
		cleanup()
		return nil, nil, err
	}
	work, err := filepath.Abs(work)
	if err != nil {
		return fail(err)
	}
	appDir, err := filepath.Abs(b.cfg.AppDir)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return fail(fmt.Errorf("make app dir: %w", err))
	}
	if entries, err := os.ReadDir(appDir); err != nil {
		return fail(fmt.Errorf("read app dir: %w", err))
	} else if len(entries) > 0 {
		return fail(fmt.Errorf("%w: app dir %s is not empty", ErrInvalidConfig, appDir))
	}
	if err := checkWritable(appDir); err != nil {
		return fail(fmt.Errorf("app dir: %w", err))
	}
	s := &stage{
		buildDir:       appDir,
		cacheDir:       filepath.Join(work, "cache"),
		envDir:         filepath.Join(work, "env"),
		homeDir:        filepath.Join(work, "home"),
		packsDir:       filepath.Join(work, "buildpacks"),
		env:            b.cfg.Env,
		out:            b.out,
		http:           b.cfg.HTTPClient,
		compileTimeout: b.cfg.CompileTimeout,
	}
	fresh := []string{s.envDir, s.homeDir, s.packsDir}
	if b.cfg.CacheDir != "" {
		s.cacheDir = b.cfg.CacheDir
		if err := checkWritable(s.cacheDir); err != nil {
			return fail(fmt.Errorf("cache dir: %w", err))
		}
	} else {
		fresh = append(fresh, s.cacheDir)
	}
	for _, dir := range fresh {
		if err := os.RemoveAll(dir); err != nil {
			return fail(fmt.Errorf("clear %s: %w", dir, err))
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fail(fmt.Errorf("make %s: %w", dir, err))
		}
	}
	s.environ = programEnviron(b.cfg.Environ, s.homeDir)
	if err := writeEnvDir(s.envDir, b.cfg.Env); err != nil {
		return fail(fmt.Errorf("write ENV_DIR: %w", err))
	}
	return s, cleanup, nil
}

// checkWritable reports whether the build can create files in dir, with
// an error that names the user when it cannot.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".slugbuilder-probe-*")
	if err != nil {
		return fmt.Errorf("%s is not writable by uid %d: %w", dir, os.Getuid(), err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// writeEnvDir writes each config var to a file named after it in dir,
// through an os.Root, so no name can place a file outside dir.
func writeEnvDir(dir string, env map[string]string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for name, value := range env {
		if err := checkEnvName(name); err != nil {
			return err
		}
		if err := root.WriteFile(name, []byte(value), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// programEnviron returns environ with HOME set to home: tools that write
// under HOME must not write into BUILD_DIR (/app is the app user's home),
// where it would end up in the slug.
func programEnviron(environ []string, home string) []string {
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home)
}

// unpackSource unpacks the source archive into dir. The unpacking refuses
// paths that escape dir and links that lead outside it.
func (b *builder) unpackSource(dir string) error {
	defer b.timed("unpack source")()
	f, err := os.Open(b.cfg.SourcePath)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	defer f.Close()
	if err := slugrunner.Unpack(f, dir, slugrunner.Limits{}); err != nil {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	return nil
}

// useCacheDir says whether the kept cache dir holds a cache.
func (b *builder) useCacheDir(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		b.out.step("No build cache yet")
		return
	}
	b.out.step("Using the build cache kept on this host")
}

// restoreCache unpacks the build cache into dir and returns the fingerprint
// of what it restored (see treeFingerprint), or "" when there was no
// usable cache. A missing cache file is an empty cache; a cache that
// cannot be restored is dropped with a warning.
func (b *builder) restoreCache(dir string) string {
	if b.cfg.CacheInPath == "" {
		return ""
	}
	defer b.timed("restore cache")()
	f, err := os.Open(b.cfg.CacheInPath)
	if errors.Is(err, os.ErrNotExist) {
		b.out.step("No build cache yet")
		return ""
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			err = slugrunner.Unpack(f, dir, slugrunner.Limits{})
		}
		f.Close()
		if err == nil {
			b.out.step("Restored build cache (%s)", humanSize(fi.Size()))
			fp, err := treeFingerprint(dir)
			if err != nil {
				b.log.Warn("fingerprint build cache", "err", err)
				return ""
			}
			return fp
		}
	}
	b.out.fail(fmt.Sprintf("Cannot restore the build cache (%v); building without it", err))
	b.log.Warn("restore build cache", "err", err)
	if err := os.RemoveAll(dir); err == nil {
		_ = os.MkdirAll(dir, 0o700)
	}
	return ""
}

// saveCache writes dir as the build cache, unless it is unchanged since it
// was restored (restored is its fingerprint then), and reports whether it
// did. A failure is a warning: the slug is built.
func (b *builder) saveCache(ctx context.Context, dir, restored string) bool {
	if b.cfg.CacheOutPath == "" {
		return false
	}
	defer b.timed("save cache")()
	if restored != "" {
		if now, err := treeFingerprint(dir); err == nil && now == restored {
			b.out.step("Build cache unchanged; not saving it again")
			return false
		}
	}
	stats, err := writeArchiveFile(ctx, b.cfg.CacheOutPath, dir, gzip.BestSpeed, 0,
		func(name, target string) error {
			b.out.info("Not caching the symbolic link %s -> %s: it leads outside the cache", name, target)
			return nil
		})
	if err != nil {
		b.out.fail(fmt.Sprintf("Cannot save the build cache: %v", err))
		b.log.Warn("save build cache", "err", err)
		return false
	}
	b.out.step("Saved build cache (%s)", humanSize(stats.size))
	return true
}

// selected is a buildpack chosen for the build; detected is set when its
// detect already said yes.
type selected struct {
	buildpack
	detected bool
}

// selectBuildpacks returns the buildpacks to run: BuildpackURL, else the
// .buildpacks file, else the first built-in buildpack that detects the app.
// Custom buildpacks are fetched here, so a bad URL fails before anything
// compiles; named buildpacks are detected just before they compile, after
// the ones before them.
func (b *builder) selectBuildpacks(ctx context.Context, s *stage) ([]selected, error) {
	var refs []buildpackRef
	switch data, err := os.ReadFile(filepath.Join(s.buildDir, ".buildpacks")); {
	case b.cfg.BuildpackURL != "":
		ref, err := parseBuildpackRef(b.cfg.BuildpackURL)
		if err != nil {
			return nil, err
		}
		refs = []buildpackRef{ref}
	case err == nil:
		if refs, err = parseBuildpacksFile(data); err != nil {
			return nil, err
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read .buildpacks: %w", err)
	default:
		for _, name := range builtinNames {
			p := newBuiltin(name)
			kind, ok, err := p.detect(ctx, s)
			if err != nil {
				return nil, fmt.Errorf("detect %s: %w", p.name(), err)
			}
			if ok {
				b.out.step("%s app detected", kind)
				return []selected{{buildpack: p, detected: true}}, nil
			}
		}
		return nil, fmt.Errorf("%w: no go.mod, index.html, public/, requirements.txt, *.py or Procfile at the app's root; "+
			"add one, or name a buildpack with BUILDPACK_URL or a .buildpacks file", ErrNoBuildpack)
	}

	packs := make([]selected, 0, len(refs))
	for i, ref := range refs {
		if ref.builtin != "" {
			packs = append(packs, selected{buildpack: newBuiltin(ref.builtin)})
			continue
		}
		g := &gitBuildpack{ref: ref, dir: filepath.Join(s.packsDir, strconv.Itoa(i))}
		if err := g.fetch(ctx, s); err != nil {
			return nil, err
		}
		packs = append(packs, selected{buildpack: g})
	}
	return packs, nil
}

// readProcfile parses the Procfile in dir, if there is one.
func readProcfile(dir string) (map[string]string, bool, error) {
	p := filepath.Join(dir, "Procfile")
	if fi, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	} else if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%w: the Procfile is not a regular file", ErrProcfile)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	types, err := slugrunner.ParseProcfile(f)
	if err != nil {
		return nil, false, err // names the line, wraps ErrProcfile
	}
	return types, true, nil
}

// applySlugignore removes what .slugignore lists from dir.
func (b *builder) applySlugignore(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, ".slugignore"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read .slugignore: %w", err)
	}
	ig, err := parseSlugignore(data)
	if err != nil {
		return err
	}
	removed, err := applySlugignore(dir, ig)
	if err != nil {
		return err
	}
	b.out.step("Applied .slugignore: removed %d %s", len(removed), plural(len(removed), "path", "paths"))
	return nil
}

// timed logs how long a phase took when the returned func is called.
func (b *builder) timed(phase string) func() {
	start := time.Now()
	return func() {
		b.log.Info("build phase done", "phase", phase, "duration", time.Since(start).Round(time.Millisecond))
	}
}

func typeList(types map[string]string) string {
	if len(types) == 0 {
		return "(none)"
	}
	return strings.Join(slices.Sorted(maps.Keys(types)), ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
