package slugbuilder

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// outsideLinkFunc decides what happens to a symbolic link that leads
// outside the archived tree (name is its slash path in the archive): nil
// leaves it out of the archive, an error stops the archive.
type outsideLinkFunc func(name, target string) error

// writeTarGz writes the tree under dir to w as a gzipped tar archive of
// relative paths ("bin/web", never "/app/bin/web" or "../x"), in lexical
// order. Directories, regular files and symbolic links are archived;
// sockets, pipes and devices are skipped. A link to an absolute path inside
// dir is archived as the equivalent relative link; a link leading outside
// dir goes to outside. Ownership is not recorded: the unpacking side
// decides it. Every file is read through an os.Root of dir, so nothing
// outside dir is ever read, even through a link swapped in on the way.
func writeTarGz(ctx context.Context, w io.Writer, dir string, level int, outside outsideLinkFunc) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	defer root.Close()
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return addTarEntry(tw, root, dir, name, info, outside)
	})
	if err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	return nil
}

// addTarEntry archives the entry name (a slash path in root, whose path
// is dir) described by info.
func addTarEntry(tw *tar.Writer, root *os.Root, dir, name string, info fs.FileInfo, outside outsideLinkFunc) error {
	mode := info.Mode()
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(mode.Perm()),
		ModTime: info.ModTime().Truncate(time.Second),
	}
	if mode&fs.ModeSetuid != 0 {
		hdr.Mode |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		hdr.Mode |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		hdr.Mode |= 0o1000
	}
	switch {
	case mode.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		return tw.WriteHeader(hdr)
	case mode&fs.ModeSymlink != 0:
		target, err := root.Readlink(name)
		if err != nil {
			return err
		}
		local, ok := localLinkTarget(dir, name, target)
		if !ok {
			return outside(name, target)
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = local
		return tw.WriteHeader(hdr)
	case mode.IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = info.Size()
		f, err := root.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s changed while it was archived: %w", name, err)
		}
		return nil
	default:
		return nil // sockets, pipes, devices: nothing an app can ship
	}
}

// treeFingerprint sums up the tree under dir: the path, type, mode and, for
// files, size and modification time (to the second, as archived) of every
// entry, and the targets of links. Two equal fingerprints mean an archive
// of the tree would hold the same entries.
func treeFingerprint(dir string) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	fsys := root.FS()
	h := sha256.New()
	err = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %v", name, info.Mode())
		switch {
		case info.Mode().IsRegular():
			fmt.Fprintf(h, " %d %d", info.Size(), info.ModTime().Unix())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " %q", target)
		}
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// localLinkTarget returns the relative target under which the link name (a
// slash path relative to root) points at target, when target stays inside
// root: relative targets as they are, absolute ones made relative. ok is
// false for a target outside root.
func localLinkTarget(root, name, target string) (string, bool) {
	if target == "" {
		return "", false
	}
	if filepath.IsAbs(target) {
		rel, err := filepath.Rel(root, filepath.Clean(target))
		if err != nil || !filepath.IsLocal(rel) && rel != "." {
			return "", false
		}
		local, err := filepath.Rel(filepath.Dir(filepath.Join(root, filepath.FromSlash(name))), filepath.Join(root, rel))
		if err != nil {
			return "", false
		}
		return filepath.ToSlash(local), true
	}
	joined := path.Join(path.Dir(name), filepath.ToSlash(target))
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return "", false
	}
	return target, true
}

// archiveStats describes a written archive.
type archiveStats struct {
	digest string // "sha256:<hex>" of the compressed archive
	size   int64  // bytes of the compressed archive
}

// tooLargeError is returned by writeArchiveFile when the archive passed its
// limit.
type tooLargeError struct{ size, max int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("compressed size %s (%d bytes) is over the limit of %s (%d bytes)",
		humanSize(e.size), e.size, humanSize(e.max), e.max)
}

// limitSink passes the compressed archive to its file while it hashes and
// counts it. Once the count passes max (when max > 0), it empties the file
// and only counts the rest, so the full size can be reported without
// filling the disk.
type limitSink struct {
	f    *os.File
	hash hash.Hash
	n    int64
	max  int64
	over bool
}

func (s *limitSink) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.over {
		return len(p), nil
	}
	if s.max > 0 && s.n > s.max {
		s.over = true
		if err := s.f.Truncate(0); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if _, err := s.f.Write(p); err != nil {
		return 0, err
	}
	s.hash.Write(p)
	return len(p), nil
}

// writeArchiveFile writes the tree under dir as a gzipped tar archive (see
// writeTarGz) to the file dst, creating its directory, and returns the
// archive's digest and size. The archive goes to a temporary file next to
// dst that is renamed to dst once complete, so dst never holds a partial
// archive. An archive bigger than max bytes (when max > 0) is not kept: a
// *tooLargeError with its full size is returned.
func writeArchiveFile(ctx context.Context, dst, dir string, level int, max int64, outside outsideLinkFunc) (archiveStats, error) {
	var stats archiveStats
	err := writeFileAtomic(dst, func(f *os.File) error {
		sink := &limitSink{f: f, hash: sha256.New(), max: max}
		// gzip writes a few hundred bytes at a time; on a container's
		// overlay (fuse-overlayfs in particular) each write is a round
		// trip, and saving a 65 MB cache took 18 s instead of 4 s.
		bw := bufio.NewWriterSize(sink, 1<<20)
		if err := writeTarGz(ctx, bw, dir, level, outside); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if sink.over {
			return &tooLargeError{size: sink.n, max: max}
		}
		stats = archiveStats{digest: "sha256:" + hex.EncodeToString(sink.hash.Sum(nil)), size: sink.n}
		return nil
	})
	return stats, err
}

// writeFileAtomic creates the file dst (mode 0644, its directory 0755 when
// missing) with what write writes into it: into a temporary file in the
// same directory, synced and renamed to dst when write succeeds, removed
// when it fails.
func writeFileAtomic(dst string, write func(*os.File) error) (err error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}
