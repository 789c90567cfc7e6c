package slugrunner

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Default extraction limits, used where a Limits field is zero.
const (
	DefaultMaxBytes   int64 = 2 << 30 // 2 GiB of file content
	DefaultMaxEntries       = 200_000
)

// trailerLimit bounds how much of a gzip stream is read after the end of
// the tar archive to verify the gzip checksum. Tar writers pad archives to
// a record (10 KiB by default); anything beyond this bound is not read.
const trailerLimit = 1 << 20

// maxNameLen bounds entry names and link targets, in bytes (PATH_MAX).
const maxNameLen = 4096

var gzipMagic = []byte{0x1f, 0x8b}

// Limits bounds what Unpack extracts. The zero value means the defaults.
type Limits struct {
	// MaxBytes is the most bytes of regular-file content extracted in
	// total. Zero means DefaultMaxBytes (2 GiB).
	MaxBytes int64
	// MaxEntries is the most archive entries of any type. Zero means
	// DefaultMaxEntries (200,000).
	MaxEntries int
}

// Validate reports whether the limits are usable.
func (l Limits) Validate() error {
	if l.MaxBytes < 0 {
		return fmt.Errorf("limits: MaxBytes %d is negative", l.MaxBytes)
	}
	if l.MaxEntries < 0 {
		return fmt.Errorf("limits: MaxEntries %d is negative", l.MaxEntries)
	}
	return nil
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// EntryError is the error for one archive entry that Unpack refused or
// failed to extract. Name is the entry's name as it appears in the archive.
type EntryError struct {
	Name string
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("tar entry %q: %v", e.Name, e.Err) }

// Unwrap returns the underlying error.
func (e *EntryError) Unwrap() error { return e.Err }

// Unpack extracts a gzip-compressed or plain tar archive read from r into
// dir, creating dir when it does not exist.
//
// Unpack refuses, with an *EntryError naming the entry and wrapping
// ErrUnsafeEntry, any entry whose name is absolute or contains "..",
// whose parent directory is a symlink, a symlink whose target is absolute,
// climbs above dir or resolves outside dir, a hard link whose target is
// not a regular file inside dir, device files, fifos and unknown entry
// types. Exceeding limits fails with an error wrapping ErrLimitExceeded.
// All file system access goes through an os.Root, so no entry can reach
// outside dir even through symlinks that were already there.
//
// Permission bits and modification times are preserved; setuid, setgid
// and sticky bits and ownership are not. Entries replace existing files
// and symlinks of the same name; a directory is never replaced by
// anything but a directory. On error dir holds what was extracted so far.
func Unpack(r io.Reader, dir string, limits Limits) error {
	if err := limits.Validate(); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	defer root.Close()

	x := &extractor{
		root:     root,
		limits:   limits.withDefaults(),
		realDirs: map[string]bool{},
		symlinks: map[string]string{},
	}
	if err := x.run(r); err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	return nil
}

type pendingDir struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

type extractor struct {
	root    *os.Root
	limits  Limits
	entries int
	bytes   int64
	// realDirs holds the directories verified (or created) as real
	// directories during this extraction. A directory is never replaced,
	// so an entry stays valid once added.
	realDirs map[string]bool
	// symlinks maps each symlink created by this extraction to its target.
	symlinks map[string]string
	dirs     []pendingDir
}

func (x *extractor) run(r io.Reader) error {
	if err := x.extractAll(r); err != nil {
		// Leave no symlink leading outside behind, even on failure.
		_ = x.checkSymlinks()
		return err
	}
	if err := x.checkSymlinks(); err != nil {
		return err
	}
	return x.finishDirs()
}

func (x *extractor) extractAll(r io.Reader) error {
	br := bufio.NewReader(r)
	var src io.Reader = br
	var zr *gzip.Reader
	if magic, _ := br.Peek(len(gzipMagic)); bytes.Equal(magic, gzipMagic) {
		var err error
		if zr, err = gzip.NewReader(br); err != nil {
			return fmt.Errorf("read gzip header: %w", err)
		}
		src = zr
	}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			// Metadata for the whole archive (git archive writes the
			// commit ID in one); it names no file.
			continue
		}
		x.entries++
		if x.entries > x.limits.MaxEntries {
			return &EntryError{Name: hdr.Name, Err: fmt.Errorf("%w: more than %d entries", ErrLimitExceeded, x.limits.MaxEntries)}
		}
		if err := x.extract(hdr, tr); err != nil {
			return &EntryError{Name: hdr.Name, Err: err}
		}
	}
	if zr != nil {
		// Reading to the end of the gzip stream verifies its checksum.
		if _, err := io.Copy(io.Discard, io.LimitReader(zr, trailerLimit)); err != nil {
			return fmt.Errorf("read gzip: %w", err)
		}
	}
	return nil
}

func unsafeEntry(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsafeEntry, fmt.Sprintf(format, args...))
}

// cleanName turns an archive path into a slash-separated path relative to
// the root, "" for the root itself.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", unsafeEntry("empty name")
	case strings.ContainsRune(name, 0):
		return "", unsafeEntry("name contains a NUL byte")
	case len(name) > maxNameLen:
		return "", unsafeEntry("name longer than %d bytes", maxNameLen)
	case path.IsAbs(name):
		return "", unsafeEntry("absolute path")
	}
	for part := range strings.SplitSeq(name, "/") {
		if part == ".." {
			return "", unsafeEntry("path contains \"..\" and may escape the target directory")
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func (x *extractor) extract(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the target directory itself: it exists
		}
		return unsafeEntry("a non-directory entry for the target directory itself")
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(name, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		return x.file(name, hdr, r)
	case tar.TypeSymlink:
		return x.symlink(name, hdr.Linkname)
	case tar.TypeLink:
		return x.hardlink(name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return unsafeEntry("device file")
	case tar.TypeFifo:
		return unsafeEntry("fifo")
	default:
		return unsafeEntry("unsupported entry type %q", hdr.Typeflag)
	}
}

// ensureParents makes sure every parent of name is a real directory,
// creating missing ones. It refuses symlinks on the way, so no entry is
// ever written through a symlink.
func (x *extractor) ensureParents(name string) error {
	dir := path.Dir(name)
	if dir == "." || x.realDirs[dir] {
		return nil
	}
	if err := x.ensureParents(dir); err != nil {
		return err
	}
	fi, err := x.root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := x.root.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create parent directory: %w", err)
		}
	case err != nil:
		return fmt.Errorf("check parent directory: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return unsafeEntry("parent %q is a symlink", dir)
	case !fi.IsDir():
		return fmt.Errorf("parent %q is not a directory", dir)
	}
	x.realDirs[dir] = true
	return nil
}

// clear removes a non-directory at name so that a new entry can take its
// place without following it.
func (x *extractor) clear(name string) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("a directory exists at this path")
	}
	if err := x.root.Remove(name); err != nil {
		return fmt.Errorf("replace existing file: %w", err)
	}
	delete(x.symlinks, name)
	return nil
}

func perm(hdr *tar.Header) fs.FileMode {
	return fs.FileMode(hdr.Mode) & fs.ModePerm
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	if err := x.ensureParents(name); err != nil {
		return err
	}
	if !x.realDirs[name] {
		fi, err := x.root.Lstat(name)
		switch {
		case err == nil && fi.IsDir():
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		default:
			if err := x.clear(name); err != nil {
				return err
			}
			if err := x.root.Mkdir(name, 0o755); err != nil {
				return fmt.Errorf("create directory: %w", err)
			}
		}
		x.realDirs[name] = true
	}
	x.dirs = append(x.dirs, pendingDir{name: name, mode: perm(hdr), mtime: hdr.ModTime})
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size > x.limits.MaxBytes-x.bytes {
		return fmt.Errorf("%w: more than %d bytes of file content", ErrLimitExceeded, x.limits.MaxBytes)
	}
	if err := x.ensureParents(name); err != nil {
		return err
	}
	if err := x.clear(name); err != nil {
		return err
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, hdr.Size))
	x.bytes += n
	if err == nil && n != hdr.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("write file: %w", err)
	}
	if err := f.Chmod(perm(hdr)); err != nil {
		f.Close()
		return fmt.Errorf("set mode: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write file: %w", err)
	}
	if err := x.root.Chtimes(name, hdr.AccessTime, hdr.ModTime); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (x *extractor) symlink(name, target string) error {
	switch {
	case target == "":
		return unsafeEntry("empty symlink target")
	case strings.ContainsRune(target, 0):
		return unsafeEntry("symlink target contains a NUL byte")
	case len(target) > maxNameLen:
		return unsafeEntry("symlink target longer than %d bytes", maxNameLen)
	case path.IsAbs(target):
		return unsafeEntry("symlink target %q is absolute", target)
	}
	// The cleaned target only has ".." at its start; stored cleaned, it
	// climbs through real parent directories only, so counting them is
	// exact.
	clean := path.Clean(target)
	ups := 0
	for rest := clean; rest == ".." || strings.HasPrefix(rest, "../"); rest = strings.TrimPrefix(rest[2:], "/") {
		ups++
	}
	depth := 0
	if dir := path.Dir(name); dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	if ups > depth {
		return unsafeEntry("symlink target %q escapes the target directory", target)
	}
	if err := x.ensureParents(name); err != nil {
		return err
	}
	if err := x.clear(name); err != nil {
		return err
	}
	if err := x.root.Symlink(clean, name); err != nil {
		return fmt.Errorf("create symlink: %w", err)
	}
	x.symlinks[name] = clean
	return nil
}

func (x *extractor) hardlink(name, target string) error {
	if target == "" {
		return unsafeEntry("empty hard link target")
	}
	old, err := cleanName(target)
	if err != nil || old == "" {
		return unsafeEntry("hard link target %q is outside the target directory", target)
	}
	fi, err := x.root.Lstat(old)
	if err != nil || !fi.Mode().IsRegular() {
		return unsafeEntry("hard link target %q is not a regular file extracted before it", target)
	}
	if old == name {
		return nil
	}
	if err := x.ensureParents(name); err != nil {
		return err
	}
	if err := x.clear(name); err != nil {
		return err
	}
	if err := x.root.Link(old, name); err != nil {
		return fmt.Errorf("create hard link: %w", err)
	}
	return nil
}

// checkSymlinks resolves every symlink the archive created, once the tree
// is complete, and refuses (and removes) any that leads outside the root,
// which is possible only through symlinks that were in the directory
// before extraction.
func (x *extractor) checkSymlinks() error {
	var first error
	names := make([]string, 0, len(x.symlinks))
	for name := range x.symlinks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		_, err := x.root.Stat(name)
		if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) {
			continue // resolves inside, dangles or loops: harmless
		}
		if first == nil {
			first = &EntryError{Name: name, Err: unsafeEntry("symlink target %q does not resolve inside the target directory: %v", x.symlinks[name], err)}
		}
		if rmErr := x.root.Remove(name); rmErr != nil {
			return &EntryError{Name: name, Err: fmt.Errorf("remove unsafe symlink: %w", rmErr)}
		}
		delete(x.symlinks, name)
	}
	return first
}

// finishDirs applies directory modes and times, deepest first, after all
// their contents exist.
func (x *extractor) finishDirs() error {
	sort.SliceStable(x.dirs, func(i, j int) bool {
		return strings.Count(x.dirs[i].name, "/") > strings.Count(x.dirs[j].name, "/")
	})
	for _, d := range x.dirs {
		if err := x.root.Chmod(d.name, d.mode); err != nil {
			return &EntryError{Name: d.name, Err: fmt.Errorf("set mode: %w", err)}
		}
		if err := x.root.Chtimes(d.name, time.Time{}, d.mtime); err != nil {
			return &EntryError{Name: d.name, Err: fmt.Errorf("set times: %w", err)}
		}
	}
	return nil
}
