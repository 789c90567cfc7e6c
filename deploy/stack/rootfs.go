package stack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

// imagePath is PATH in the chroot and in the images.
const imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// App user of the images.
const (
	appUser = "app"
	appUID  = 1000
	appHome = "/app"
)

// BuildCacheDir is where build jobs mount their app's build-cache volume
// (the build job's contract, slugbuilder/types).
const BuildCacheDir = slugtypes.CacheDir

// chrootScript runs "$@" chrooted into $1. It runs in a private mount
// namespace of its own and mounts there /proc, a tmpfs /dev with the usual
// device nodes, /dev/pts and, when $2 is not empty, $2 on
// /var/cache/apt/archives; the mounts end with the namespace, whichever way
// the command ends.
const chrootScript = `set -eu
root=$1 cache=$2
shift 2
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,nosuid,size=16m tmpfs "$root/dev"
mknod -m 0666 "$root/dev/null" c 1 3
mknod -m 0666 "$root/dev/zero" c 1 5
mknod -m 0666 "$root/dev/full" c 1 7
mknod -m 0666 "$root/dev/random" c 1 8
mknod -m 0666 "$root/dev/urandom" c 1 9
mknod -m 0666 "$root/dev/tty" c 5 0
mkdir -m 0755 "$root/dev/pts"
mkdir -m 1777 "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
if [ -n "$cache" ]; then mount --bind "$cache" "$root/var/cache/apt/archives"; fi
exec chroot "$root" "$@"
`

// dpkgExcludes keeps manual pages, documentation and translations out of
// the images, as Debian's slim images do; copyright files stay. It is
// installed in the root file system, so later package installs follow it.
const dpkgExcludes = `# Keep images small: no manual pages, documentation or translations.
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
`

// hostCADir is where the host's own CA certificates go in the root file
// system, for update-ca-certificates to add them to the bundle.
const hostCADir = "/usr/local/share/ca-certificates/gantry-host"

// bootstrap runs debootstrap into rootfs with the stack packages.
func (b *build) bootstrap(ctx context.Context, rootfs, mirror string) error {
	cache := filepath.Join(b.cacheDir, "debootstrap")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("debootstrap cache: %w", err)
	}
	return b.exec(ctx, debootstrapTimeout, "debootstrap", hostEnv(), b.debootstrap,
		"--variant=minbase",
		"--include="+strings.Join(stackPackages, ","),
		"--cache-dir="+cache,
		Suite, rootfs, mirror)
}

// configure turns the bootstrapped rootfs into the stack: user app, the
// host's CA certificates, dpkg path excludes. It returns a progress note.
func (b *build) configure(ctx context.Context, rootfs string) (string, error) {
	if err := b.chroot(ctx, chrootTimeout, rootfs, "", "useradd", "--uid", strconv.Itoa(appUID), "--user-group",
		"--home-dir", appHome, "--no-create-home", "--shell", "/bin/bash", appUser); err != nil {
		return "", fmt.Errorf("add user %s: %w", appUser, err)
	}
	home := filepath.Join(rootfs, appHome)
	if err := os.Mkdir(home, 0o755); err != nil {
		return "", fmt.Errorf("make %s: %w", appHome, err)
	}
	if err := os.Chown(home, appUID, appUID); err != nil {
		return "", fmt.Errorf("chown %s: %w", appHome, err)
	}
	// The build-cache volume of a build job takes the owner of the
	// directory it is first mounted on: the app user, who builds.
	cacheDir := filepath.Join(rootfs, BuildCacheDir)
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", fmt.Errorf("make %s: %w", BuildCacheDir, err)
	}
	if err := os.Chown(cacheDir, appUID, appUID); err != nil {
		return "", fmt.Errorf("chown %s: %w", BuildCacheDir, err)
	}
	added, err := b.addHostCAs(ctx, rootfs)
	if err != nil {
		return "", err
	}
	if err := slim(rootfs); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d CA certificates of this host added", added), nil
}

// addHostCAs adds the certificates of the host's CA bundle that the root
// file system's bundle lacks (local or corporate CAs) and returns how many.
func (b *build) addHostCAs(ctx context.Context, rootfs string) (int, error) {
	host, err := os.ReadFile(hostCABundle)
	if errors.Is(err, os.ErrNotExist) {
		b.log.Warn("host has no CA bundle; the images carry Debian's", "path", hostCABundle)
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read host CA bundle: %w", err)
	}
	own, err := os.ReadFile(filepath.Join(rootfs, hostCABundle))
	if err != nil {
		return 0, fmt.Errorf("read image CA bundle: %w", err)
	}
	extras := hostCAExtras(host, own)
	if len(extras) == 0 {
		return 0, nil
	}
	dir := filepath.Join(rootfs, hostCADir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("host CA dir: %w", err)
	}
	for i, block := range extras {
		name := filepath.Join(dir, fmt.Sprintf("host-%03d.crt", i+1))
		if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o644); err != nil {
			return 0, fmt.Errorf("write host CA: %w", err)
		}
	}
	if err := b.chroot(ctx, chrootTimeout, rootfs, "", "update-ca-certificates"); err != nil {
		return 0, fmt.Errorf("update CA certificates: %w", err)
	}
	return len(extras), nil
}

// hostCAExtras returns the certificates of the PEM bundle host that the PEM
// bundle image lacks, in host order and without duplicates. Blocks that are
// not X.509 certificates are left out.
func hostCAExtras(host, image []byte) []*pem.Block {
	have := map[string]bool{}
	for _, block := range pemCertificates(image) {
		have[string(block.Bytes)] = true
	}
	var out []*pem.Block
	for _, block := range pemCertificates(host) {
		if have[string(block.Bytes)] {
			continue
		}
		have[string(block.Bytes)] = true
		out = append(out, &pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})
	}
	return out
}

// pemCertificates returns the parseable certificate blocks of a PEM bundle.
func pemCertificates(data []byte) []*pem.Block {
	var out []*pem.Block
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			return out
		}
		data = rest
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, block)
		}
	}
}

// slim installs dpkgExcludes and removes the files it excludes that
// debootstrap has already unpacked.
func slim(rootfs string) error {
	cfg := filepath.Join(rootfs, "etc/dpkg/dpkg.cfg.d/gantry-excludes")
	if err := os.WriteFile(cfg, []byte(dpkgExcludes), 0o644); err != nil {
		return fmt.Errorf("write dpkg excludes: %w", err)
	}
	share := filepath.Join(rootfs, "usr/share")
	none := func(string) bool { return false }
	for dir, keep := range map[string]func(string) bool{
		"man":    none,
		"info":   none,
		"locale": func(name string) bool { return name == "locale.alias" },
	} {
		if err := pruneDir(filepath.Join(share, dir), keep); err != nil {
			return err
		}
	}
	doc := filepath.Join(share, "doc")
	entries, err := os.ReadDir(doc)
	if err != nil {
		return fmt.Errorf("slim: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(doc, e.Name())
		if !e.IsDir() {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("slim: %w", err)
			}
			continue
		}
		if err := pruneDir(p, func(name string) bool { return name == "copyright" }); err != nil {
			return err
		}
	}
	return nil
}

// pruneDir removes the entries of dir that keep rejects. It leaves a
// missing dir, or one that is a symbolic link, alone: symbolic links in a
// root file system point into it, not into the host.
func pruneDir(dir string, keep func(name string) bool) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("slim: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("slim: %w", err)
	}
	for _, e := range entries {
		if keep(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("slim: %w", err)
		}
	}
	return nil
}

// installBuildTools installs the builder packages into rootfs with apt,
// without recommends, its .deb files kept in the cache dir.
func (b *build) installBuildTools(ctx context.Context, rootfs string) error {
	cache := filepath.Join(b.cacheDir, "apt")
	if err := os.MkdirAll(filepath.Join(cache, "partial"), 0o755); err != nil {
		return fmt.Errorf("apt cache: %w", err)
	}
	args := []string{"apt-get", "install", "--yes", "--quiet", "--no-install-recommends",
		"-o", "APT::Install-Suggests=false", "-o", "Dpkg::Use-Pty=false"}
	return b.chroot(ctx, aptTimeout, rootfs, cache, append(args, builderPackages...)...)
}

// chroot runs argv inside rootfs through chrootScript; cache, when not
// empty, is mounted as apt's archive cache.
func (b *build) chroot(ctx context.Context, timeout time.Duration, rootfs, cache string, argv ...string) error {
	args := append([]string{"-c", chrootScript, "chroot", rootfs, cache}, argv...)
	env := append(hostEnv(), "HOME=/root", "LANG=C.UTF-8", "DEBCONF_NONINTERACTIVE_SEEN=true")
	return b.exec(ctx, timeout, "chroot "+argv[0], env, "/bin/sh", args...)
}

// proxyVars are the proxy settings of the host that builds pass on.
var proxyVars = []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// hostEnv is the environment of the commands: a fixed PATH, no prompts,
// and the host's proxy settings.
func hostEnv() []string {
	env := []string{"PATH=" + imagePath, "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	for _, k := range proxyVars {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// exec runs name in a private mount namespace and its own process group,
// which is killed when ctx ends or timeout passes. The output goes to the
// logger at debug level; its last lines are part of the error, which label
// names.
func (b *build) exec(ctx context.Context, timeout time.Duration, label string, env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = "/"
	out := newOutput(b.log, label)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Unshareflags: syscall.CLONE_NEWNS}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	out.flush()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("%s: %w; last output:\n%s", label, err, out.tail())
	}
	return nil
}

// tailLines is how many output lines an error carries.
const tailLines = 30

// output receives a command's output: each line goes to the logger at
// debug level and the last tailLines lines are kept.
type output struct {
	mu      sync.Mutex
	log     *slog.Logger
	name    string
	partial []byte
	lines   []string
}

func newOutput(log *slog.Logger, name string) *output {
	return &output{log: log, name: name}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		o.add(string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
}

// flush takes an unterminated last line.
func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 {
		o.add(string(o.partial))
		o.partial = nil
	}
}

func (o *output) add(line string) {
	line = strings.TrimRight(line, "\r")
	o.log.Debug(line, "cmd", o.name)
	o.lines = append(o.lines, line)
	if len(o.lines) > tailLines {
		o.lines = o.lines[len(o.lines)-tailLines:]
	}
}

func (o *output) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// lock takes the build lock of the cache dir, waiting up to lockTimeout
// while another build holds it. The returned func releases it.
func (b *build) lock(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	f, err := os.OpenFile(filepath.Join(b.cacheDir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stack: build lock: %w", err)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for said := false; ; said = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("stack: build lock: %w", err)
		}
		if !said {
			b.say("Waiting for another stack build to finish")
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("stack: wait for build lock: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// removeScratch removes the scratch dir, refusing when anything is mounted
// below it (RemoveAll would descend into the mount).
func removeScratch(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %s", dir, strings.Join(mounts, ", "))
	}
	return os.RemoveAll(dir)
}

// mountsUnder returns the mount points of this process at or below dir.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}
