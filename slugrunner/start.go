package slugrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultAppDir       = "/app"
	DefaultPort         = "8080"
	DefaultFetchTimeout = 10 * time.Minute
	DefaultStopTimeout  = 10 * time.Second
)

// defaultPath is the PATH used when the environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var typeName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Config says which slug to unpack and which command of it to run.
type Config struct {
	// Slug is the path or http(s) URL of the slug, a gzip tarball of the
	// app directory. Empty means the app is already in AppDir.
	Slug string
	// Token is sent as "Authorization: Bearer <Token>" when Slug is a URL.
	// Empty sends no Authorization header.
	Token string
	// Digest is the expected digest of the slug, "sha256:<64 lowercase
	// hex digits>", checked while the slug streams in. Empty means not
	// checked.
	Digest string
	// FetchTimeout bounds fetching and unpacking the slug. Zero means
	// DefaultFetchTimeout (10 minutes).
	FetchTimeout time.Duration
	// Limits bounds the slug's extraction. The zero value means the
	// defaults of Limits.
	Limits Limits
	// AppDir is the absolute directory the slug is unpacked into, the
	// command's working directory and HOME. When it already has entries
	// (a slug mounted or unpacked before), the slug is not unpacked again.
	// Empty means DefaultAppDir ("/app").
	AppDir string
	// Type is the process type to run, looked up in AppDir/Procfile.
	// Ignored when Command is set; one of the two is required.
	Type string
	// Command is shell code to run instead of a Procfile entry (one-off
	// jobs). Empty means run Type.
	Command string
	// Port is the value of PORT, a TCP port number. Empty means
	// DefaultPort ("8080").
	Port string
	// Env is the environment the command starts from, as "KEY=value"
	// strings; HOME, PORT and PATH are set on top of it. Nil means the
	// environment of this process.
	Env []string
	// Stdin is the command's standard input. When it is a terminal, the
	// command's process group becomes the terminal's foreground group.
	// Nil means /dev/null.
	Stdin *os.File
	// Stdout and Stderr receive the command's output. Nil means
	// os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// StopTimeout is how long the command has to exit after ctx is
	// cancelled and it got SIGTERM, before it gets SIGKILL. Zero means
	// DefaultStopTimeout (10 seconds).
	StopTimeout time.Duration
	// Logger receives the runner's own messages. Nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	var errs []error
	if c.Command == "" {
		switch {
		case c.Type == "":
			errs = append(errs, errors.New("a process type or a command is required"))
		case !typeName.MatchString(c.Type):
			errs = append(errs, fmt.Errorf("process type %q does not match %s", c.Type, typeName))
		}
	}
	if strings.ContainsRune(c.Command, 0) {
		errs = append(errs, errors.New("command contains a NUL byte"))
	}
	if c.Slug != "" && strings.Contains(c.Slug, "://") && !isURL(c.Slug) {
		errs = append(errs, fmt.Errorf("slug %q: only http and https URLs are supported", describeSlug(c.Slug)))
	}
	if c.Digest != "" && !digestPattern.MatchString(c.Digest) {
		errs = append(errs, fmt.Errorf("digest %q is not of the form sha256:<64 lowercase hex digits>", c.Digest))
	}
	if c.AppDir != "" && !filepath.IsAbs(c.AppDir) {
		errs = append(errs, fmt.Errorf("app directory %q is not absolute", c.AppDir))
	}
	if c.Port != "" {
		if p, err := strconv.Atoi(c.Port); err != nil || p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("port %q is not a TCP port number", c.Port))
		}
	}
	if c.FetchTimeout < 0 {
		errs = append(errs, fmt.Errorf("fetch timeout %v is negative", c.FetchTimeout))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("stop timeout %v is negative", c.StopTimeout))
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.AppDir == "" {
		c.AppDir = DefaultAppDir
	}
	c.AppDir = filepath.Clean(c.AppDir)
	if c.Port == "" {
		c.Port = DefaultPort
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Start unpacks the slug into the app directory (unless it is already
// populated), resolves the command from the Procfile or Config.Command,
// and runs it through /bin/sh after sourcing AppDir/.profile.d/*.sh in
// lexical order, with HOME=AppDir, PORT and AppDir/bin first in PATH. The
// command itself runs in /bin/bash -c when bash exists (Procfiles are
// written for bash on Heroku), else in /bin/sh -c.
//
// The command runs in its own process group. SIGTERM, SIGINT, SIGHUP,
// SIGQUIT, SIGUSR1 and SIGUSR2 received by this process are forwarded to
// that group, so the caller must not turn them into a cancellation of ctx
// as well. When this process is PID 1 it also reaps orphaned processes
// while it waits. Cancelling ctx sends SIGTERM to the group (unless a
// SIGTERM or SIGINT was already forwarded) and SIGKILL after StopTimeout.
//
// Start returns the command's exit code, 128+n when signal n killed it.
// When err is non-nil the command did not run (or could not be waited
// for) and exitCode is -1.
func Start(ctx context.Context, cfg Config) (exitCode int, err error) {
	if err := cfg.Validate(); err != nil {
		return -1, fmt.Errorf("slugrunner: %w", err)
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	log.Info("slugrunner starting",
		"slug", describeSlug(cfg.Slug), "digest", cfg.Digest, "app_dir", cfg.AppDir,
		"type", cfg.Type, "command_given", cfg.Command != "", "port", cfg.Port, "pid1", os.Getpid() == 1)

	if cfg.Slug != "" {
		if err := installSlug(ctx, cfg); err != nil {
			return -1, fmt.Errorf("slugrunner: install slug %s: %w", describeSlug(cfg.Slug), err)
		}
	}
	command, err := resolveCommand(cfg)
	if err != nil {
		return -1, fmt.Errorf("slugrunner: %w", err)
	}
	argv := []string{"/bin/sh", "-c", profileScript(cfg.AppDir, commandShell(), command)}
	code, err := runCommand(ctx, cfg, argv, commandEnv(cfg))
	if err != nil {
		return -1, fmt.Errorf("slugrunner: %w", err)
	}
	log.Info("command exited", "code", code)
	return code, nil
}

// installSlug unpacks the slug into cfg.AppDir unless it has entries
// already. It unpacks into a sibling directory and renames it into place,
// so an interrupted unpack never leaves a half app behind; when AppDir is
// a mount point (or no sibling can be made) it unpacks in place and
// empties AppDir again on failure.
func installSlug(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	populated, err := hasEntries(cfg.AppDir)
	if err != nil {
		return err
	}
	if populated {
		log.Info("app directory already populated; not unpacking the slug", "app_dir", cfg.AppDir)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.FetchTimeout)
	defer cancel()
	src, err := openSlug(ctx, cfg)
	if err != nil {
		return err
	}
	defer src.Close()

	staging := ""
	if mounted, err := isMountPoint(cfg.AppDir); err != nil {
		return err
	} else if !mounted {
		if dir, err := os.MkdirTemp(filepath.Dir(cfg.AppDir), "."+filepath.Base(cfg.AppDir)+".unpack-"); err == nil {
			staging = dir
		} else {
			log.Debug("cannot make a staging directory; unpacking in place", "err", err)
		}
	}
	target := cfg.AppDir
	if staging != "" {
		target = staging
	}
	err = Unpack(src, target, cfg.Limits)
	if err == nil {
		err = src.Verify()
	}
	if err == nil && staging != "" {
		err = moveIntoPlace(staging, cfg.AppDir)
	}
	if err != nil {
		if staging != "" {
			os.RemoveAll(staging)
		} else {
			emptyDir(cfg.AppDir, log)
		}
		return err
	}
	log.Info("slug unpacked", "app_dir", cfg.AppDir)
	return nil
}

func moveIntoPlace(staging, dir string) error {
	if err := os.Chmod(staging, 0o755); err != nil {
		return err
	}
	// dir is empty or missing here; rename cannot replace a directory
	// that has entries.
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace empty app directory: %w", err)
	}
	if err := os.Rename(staging, dir); err != nil {
		return fmt.Errorf("move unpacked slug into place: %w", err)
	}
	return nil
}

func hasEntries(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect app directory: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect app directory: %w", err)
	}
	return len(names) > 0, nil
}

// isMountPoint reports whether dir exists on another file system than its
// parent directory.
func isMountPoint(dir string) (bool, error) {
	var st, parent syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("inspect app directory: %w", err)
	}
	if err := syscall.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, fmt.Errorf("inspect app directory: %w", err)
	}
	return st.Dev != parent.Dev, nil
}

// emptyDir removes the entries of dir after a failed in-place unpack.
func emptyDir(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("cannot clean app directory after failed unpack", "app_dir", dir, "err", err)
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			log.Warn("cannot clean app directory after failed unpack", "app_dir", dir, "err", err)
		}
	}
}

// resolveCommand returns cfg.Command, or the Procfile's command for
// cfg.Type.
func resolveCommand(cfg Config) (string, error) {
	if cfg.Command != "" {
		return cfg.Command, nil
	}
	procfile := filepath.Join(cfg.AppDir, "Procfile")
	f, err := os.Open(procfile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w %q: %s does not exist", ErrUnknownType, cfg.Type, procfile)
	}
	if err != nil {
		return "", fmt.Errorf("read Procfile: %w", err)
	}
	defer f.Close()
	types, err := ParseProcfile(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", procfile, err)
	}
	command, ok := types[cfg.Type]
	if !ok {
		names := make([]string, 0, len(types))
		for name := range types {
			names = append(names, name)
		}
		sort.Strings(names)
		available := "none"
		if len(names) > 0 {
			available = strings.Join(names, ", ")
		}
		return "", fmt.Errorf("%w %q: %s defines %s", ErrUnknownType, cfg.Type, procfile, available)
	}
	return command, nil
}

// commandEnv returns cfg.Env with HOME, PORT and PATH set.
func commandEnv(cfg Config) []string {
	env := make([]string, 0, len(cfg.Env)+3)
	path := ""
	for _, kv := range cfg.Env {
		key, value, _ := strings.Cut(kv, "=")
		switch key {
		case "HOME", "PORT":
			continue
		case "PATH":
			path = value
			continue
		}
		env = append(env, kv)
	}
	if path == "" {
		path = defaultPath
	}
	return append(env,
		"HOME="+cfg.AppDir,
		"PORT="+cfg.Port,
		"PATH="+filepath.Join(cfg.AppDir, "bin")+":"+path,
	)
}

// commandShell is the shell that runs the command itself.
func commandShell() string {
	if _, err := os.Stat("/bin/bash"); err == nil {
		return "/bin/bash"
	}
	return "/bin/sh"
}

// profileScript is the /bin/sh script that sources the profile scripts
// and then replaces itself with shell -c command, so variables that the
// profile scripts export reach the command.
func profileScript(appDir, shell, command string) string {
	return "for f in " + shellQuote(appDir) + `/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done; unset f; exec ` +
		shell + " -c " + shellQuote(command)
}

// shellQuote quotes s as one word for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
