package slugbuilder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/slugrunner"
)

func TestLocalLinkTarget(t *testing.T) {
	root := "/app"
	for _, tc := range []struct {
		name, target string
		want         string
		ok           bool
	}{
		{"lib64", "lib", "lib", true},
		{"a/b/link", "../c", "../c", true},
		{"a/link", "../../etc", "", false},
		{"link", "..", "", false},
		{"a/link", "/app/bin/web", "../bin/web", true},
		{"link", "/app", ".", true},
		{"bin/python3", "/usr/bin/python3", "", false},
		{"x", "/application", "", false},
		{"x", "", "", false},
	} {
		got, ok := localLinkTarget(root, tc.name, tc.target)
		if got != tc.want || ok != tc.ok {
			t.Errorf("localLinkTarget(%q -> %q) = %q %v, want %q %v", tc.name, tc.target, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWriteTarGzRoundTrip(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"bin/web": "#!/bin/sh\n", "a/b/c.txt": "deep", "empty": ""}
	for name, data := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "bin/web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "bin/web"), filepath.Join(src, "a/web")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "emptydir"), 0o700); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := writeTarGz(t.Context(), &buf, src, gzip.BestSpeed, nil); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := slugrunner.Unpack(bytes.NewReader(buf.Bytes()), dst, slugrunner.Limits{}); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(name)))
		if err != nil || string(got) != data {
			t.Errorf("%s: %q %v, want %q", name, got, err, data)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "bin/web")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/web: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "emptydir")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("emptydir: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "a/web")); err != nil || target != "../bin/web" {
		t.Errorf("a/web -> %q %v, want ../bin/web", target, err)
	}

	before, err := treeFingerprint(dst)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := treeFingerprint(dst); again != before {
		t.Error("the fingerprint of an unchanged tree changed")
	}
	if err := os.WriteFile(filepath.Join(dst, "empty"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if after, _ := treeFingerprint(dst); after == before {
		t.Error("the fingerprint did not change with a file")
	}
}

func TestWriteTarGzOutsideLink(t *testing.T) {
	src := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "passwd")); err != nil {
		t.Fatal(err)
	}
	errOutside := errors.New("outside")
	var buf bytes.Buffer
	err := writeTarGz(t.Context(), &buf, src, gzip.BestSpeed, func(name, target string) error {
		if name != "passwd" || target != "/etc/passwd" {
			t.Errorf("outside(%q, %q)", name, target)
		}
		return errOutside
	})
	if !errors.Is(err, errOutside) {
		t.Errorf("err = %v, want the outside func's", err)
	}
	buf.Reset()
	if err := writeTarGz(t.Context(), &buf, src, gzip.BestSpeed, func(string, string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := slugrunner.Unpack(&buf, dst, slugrunner.Limits{}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Errorf("a skipped link is in the archive: %v", entries)
	}
}

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, link string
	typ        byte
	data       string
}

// tarGz returns a gzipped tar archive of entries, written as they are.
func tarGz(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data))}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestUnsafeSource checks that a source archive cannot write outside the
// app directory: the build fails, naming the entry.
func TestUnsafeSource(t *testing.T) {
	index := tarEntry{name: "index.html", typ: tar.TypeReg, data: "<p>hi</p>"}
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		entry   string // the refused entry
	}{
		{"parent path", []tarEntry{index, {name: "../escape", typ: tar.TypeReg, data: "x"}}, "../escape"},
		{"inner parent path", []tarEntry{index, {name: "a/../../escape", typ: tar.TypeReg, data: "x"}}, "a/../../escape"},
		{"absolute path", []tarEntry{index, {name: "/tmp/escape", typ: tar.TypeReg, data: "x"}}, "/tmp/escape"},
		{"absolute symlink", []tarEntry{index, {name: "etc", typ: tar.TypeSymlink, link: "/etc"}}, "etc"},
		{"symlink climbing out", []tarEntry{index, {name: "up", typ: tar.TypeSymlink, link: "../.."}}, "up"},
		{"write through a symlink", []tarEntry{index, {name: "d", typ: tar.TypeSymlink, link: "."}, {name: "d/../../escape", typ: tar.TypeReg, data: "x"}}, "d/../../escape"},
		{"hard link outside", []tarEntry{index, {name: "passwd", typ: tar.TypeLink, link: "/etc/passwd"}}, "passwd"},
		{"device", []tarEntry{index, {name: "null", typ: tar.TypeChar}}, "null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			src := filepath.Join(base, "in", "source.tgz")
			writeFile(t, src, tarGz(t, tc.entries...))
			var out bytes.Buffer
			_, err := Build(t.Context(), Config{
				SourcePath: src,
				SlugPath:   filepath.Join(base, "out", "slug.tgz"),
				AppDir:     filepath.Join(base, "root", "app"),
				WorkDir:    filepath.Join(base, "work"),
				Out:        &out,
			})
			if !errors.Is(err, ErrSource) || !errors.Is(err, slugrunner.ErrUnsafeEntry) {
				t.Fatalf("err = %v, want ErrSource and ErrUnsafeEntry", err)
			}
			if !strings.Contains(out.String(), fmt.Sprintf(" !     bad source archive: unpack into %s: tar entry %q", filepath.Join(base, "root", "app"), tc.entry)) {
				t.Errorf("output does not name the entry:\n%s", out.String())
			}
			for _, p := range []string{filepath.Join(base, "root", "escape"), filepath.Join(base, "escape"), "/tmp/escape"} {
				if exists(t, p) {
					t.Errorf("%s was written", p)
				}
			}
			if exists(t, filepath.Join(base, "out")) {
				t.Error("a failed build wrote outputs")
			}
		})
	}
}

// TestUnsafeCache checks that a build cache archive that cannot be
// restored safely is dropped, with a warning, and the build goes on.
func TestUnsafeCache(t *testing.T) {
	t.Parallel()
	cache := filepath.Join(t.TempDir(), "cache.tgz")
	writeFile(t, cache, tarGz(t, tarEntry{name: "ok", typ: tar.TypeReg, data: "x"}, tarEntry{name: "../escape", typ: tar.TypeReg, data: "x"}))
	out := filepath.Join(t.TempDir(), "cache-out.tgz")
	b := build(t, filepath.Join("testdata", "apps", "static"), func(c *Config) { c.CacheInPath, c.CacheOutPath = cache, out })
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	if !strings.Contains(b.out, ` !     Cannot restore the build cache (unpack into `) || !strings.Contains(b.out, `tar entry "../escape": unsafe archive entry`) {
		t.Errorf("output lacks the warning:\n%s", b.out)
	}
	if exists(t, filepath.Join(b.cfg.WorkDir, "escape")) {
		t.Error("the cache wrote outside CACHE_DIR")
	}
	saved, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := slugrunner.Unpack(bytes.NewReader(saved), dst, slugrunner.Limits{}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Errorf("the saved cache holds what was dropped: %v", entries)
	}
}

// TestWriteTarGzLinkedDir checks that a link to a directory outside the
// tree is never followed.
func TestWriteTarGzLinkedDir(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), []byte("do not ship"))
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "app.txt"), []byte("ship"))
	if err := os.Symlink(outside, filepath.Join(src, "ext")); err != nil {
		t.Fatal(err)
	}
	var skipped []string
	var buf bytes.Buffer
	if err := writeTarGz(t.Context(), &buf, src, gzip.BestSpeed, func(name, target string) error {
		skipped = append(skipped, name+" -> "+target)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"ext -> " + outside}; !slices.Equal(skipped, want) {
		t.Errorf("outside links %v, want %v", skipped, want)
	}
	dst := t.TempDir()
	if err := slugrunner.Unpack(&buf, dst, slugrunner.Limits{}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadDir(dst)
	if len(got) != 1 || got[0].Name() != "app.txt" {
		t.Errorf("archive holds %v, want app.txt only", got)
	}
}

func TestWriteArchiveFileLimit(t *testing.T) {
	src := t.TempDir()
	noise := make([]byte, 64<<10)
	rand.Read(noise)
	writeFile(t, filepath.Join(src, "noise.bin"), noise)
	outDir := t.TempDir()
	noLink := func(name, target string) error { return fmt.Errorf("link %s", name) }

	full := filepath.Join(outDir, "full.tgz")
	stats, err := writeArchiveFile(t.Context(), full, src, gzip.BestSpeed, 0, noLink)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if stats.size != int64(len(data)) || stats.digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("stats %+v do not describe the %d-byte file", stats, len(data))
	}

	for _, tc := range []struct {
		max     int64
		tooBig  bool
		written bool
	}{
		{max: stats.size, written: true},
		{max: stats.size - 1, tooBig: true},
		{max: 1 << 10, tooBig: true},
	} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out", "slug.tgz")
			got, err := writeArchiveFile(t.Context(), dst, src, gzip.BestSpeed, tc.max, noLink)
			var tooLarge *tooLargeError
			if tc.tooBig {
				if !errors.As(err, &tooLarge) || tooLarge.size != stats.size || tooLarge.max != tc.max {
					t.Fatalf("err = %v, want a tooLargeError of %d bytes", err, stats.size)
				}
			} else if err != nil || got != stats {
				t.Fatalf("got %+v %v, want %+v", got, err, stats)
			}
			if exists(t, dst) != tc.written {
				t.Errorf("written = %v, want %v", !tc.written, tc.written)
			}
			if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != btoi(tc.written) {
				t.Errorf("the output directory holds %v", entries)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestWriteEnvDir(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": "postgres://x", "EMPTY": "", "MULTI": "a\nb"}
	if err := writeEnvDir(dir, env); err != nil {
		t.Fatal(err)
	}
	for name, want := range env {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q %v, want %q", name, got, err, want)
		}
	}
	for _, bad := range []string{"../escape", "a/b", ".", "", "1A"} {
		if err := writeEnvDir(dir, map[string]string{bad: "x"}); err == nil {
			t.Errorf("name %q was written", bad)
		}
	}
	if exists(t, filepath.Join(filepath.Dir(dir), "escape")) {
		t.Error("a config var was written outside ENV_DIR")
	}
}
