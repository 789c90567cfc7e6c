package slugrunner

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testMtime = time.Unix(1_700_000_000, 0)

// tarEntry describes one entry of a test archive.
type tarEntry struct {
	typ  byte
	name string
	link string // symlink or hard link target
	body string
	mode int64 // zero means 0644 for files, 0755 for directories
}

func file(name, body string) tarEntry { return tarEntry{typ: tar.TypeReg, name: name, body: body} }
func dir(name string) tarEntry        { return tarEntry{typ: tar.TypeDir, name: name} }
func symlink(name, target string) tarEntry {
	return tarEntry{typ: tar.TypeSymlink, name: name, link: target}
}
func hardlink(name, target string) tarEntry {
	return tarEntry{typ: tar.TypeLink, name: name, link: target}
}
func withMode(e tarEntry, mode int64) tarEntry { e.mode = mode; return e }

// makeTar builds a tar archive, gzip-compressed when gz is set.
func makeTar(t testing.TB, gz bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	tw := tar.NewWriter(&buf)
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	}
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, ModTime: testMtime, Format: tar.FormatPAX}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if e.typ == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeXGlobalHeader {
			// As git archive writes it: the commit ID, no file.
			hdr = &tar.Header{Typeflag: e.typ, Name: e.name, PAXRecords: map[string]string{"comment": "0123abcd"}}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write tar header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("write tar body %q: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// sandbox is a temporary directory holding the extraction target "dest"
// and a directory "outside" with a file that extraction must never touch.
type sandbox struct {
	base, dest, outside string
}

const victimBody = "do not touch"

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	base := t.TempDir()
	sb := sandbox{base: base, dest: filepath.Join(base, "dest"), outside: filepath.Join(base, "outside")}
	if err := os.Mkdir(sb.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sb.outside, "victim"), []byte(victimBody), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sb.dest, 0o755); err != nil {
		t.Fatal(err)
	}
	return sb
}

// checkOutside fails unless base holds only dest and the untouched
// outside directory.
func (sb sandbox) checkOutside(t testing.TB) {
	t.Helper()
	var found []string
	err := filepath.WalkDir(sb.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == sb.dest {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(sb.base, p)
		found = append(found, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(found)
	if want := []string{".", "outside", "outside/victim"}; strings.Join(found, ",") != strings.Join(want, ",") {
		t.Fatalf("entries outside dest: %v, want %v", found, want)
	}
	victim := filepath.Join(sb.outside, "victim")
	fi, err := os.Lstat(victim)
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if string(body) != victimBody || fi.Mode() != 0o644 || st.Nlink != 1 {
		t.Fatalf("outside/victim changed: mode %v, links %d, body %q", fi.Mode(), st.Nlink, body)
	}
}

func TestUnpack(t *testing.T) {
	tests := []struct {
		name    string
		plain   bool                            // plain tar instead of gzip
		prepare func(t *testing.T, dest string) // populates dest before extraction
		entries []tarEntry
		limits  Limits
		wantErr error  // nil: success
		errName string // the entry the error must name
		check   func(t *testing.T, dest string)
	}{
		{
			name: "nested tree",
			entries: []tarEntry{
				dir("./"), dir("app/"), withMode(dir("app/bin/"), 0o750),
				withMode(file("app/bin/run", "#!/bin/sh\n"), 0o755),
				file("app/lib/deep/x.txt", "x"),
				symlink("app/current", "lib/deep"),
				symlink("app/lib/deep/up", "../../bin/run"),
				hardlink("app/y.txt", "app/lib/deep/x.txt"),
				file("./README", "hi"),
			},
			check: func(t *testing.T, dest string) {
				wantFile(t, dest, "app/bin/run", "#!/bin/sh\n", 0o755)
				wantFile(t, dest, "app/lib/deep/x.txt", "x", 0o644)
				wantFile(t, dest, "app/y.txt", "x", 0o644)
				wantFile(t, dest, "README", "hi", 0o644)
				wantFile(t, dest, "app/current/up", "#!/bin/sh\n", 0o755)
				if target, err := os.Readlink(filepath.Join(dest, "app/current")); err != nil || target != "lib/deep" {
					t.Errorf("app/current -> %q, %v", target, err)
				}
				fi, err := os.Stat(filepath.Join(dest, "app/bin"))
				if err != nil || fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(testMtime) {
					t.Errorf("app/bin: %v %v, want mode 0750 and mtime %v", fi.Mode(), fi.ModTime(), testMtime)
				}
			},
		},
		{
			name:    "git archive's global header is skipped",
			plain:   true,
			entries: []tarEntry{{typ: tar.TypeXGlobalHeader, name: "pax_global_header"}, file("a", "x")},
			check:   func(t *testing.T, dest string) { wantFile(t, dest, "a", "x", 0o644) },
		},
		{
			name:    "plain tar",
			plain:   true,
			entries: []tarEntry{file("a", "plain")},
			check:   func(t *testing.T, dest string) { wantFile(t, dest, "a", "plain", 0o644) },
		},
		{
			name:    "setuid and setgid bits stripped",
			entries: []tarEntry{withMode(file("su", "x"), 0o6755), withMode(dir("sticky"), 0o1777)},
			check: func(t *testing.T, dest string) {
				wantFile(t, dest, "su", "x", 0o755)
				fi, err := os.Stat(filepath.Join(dest, "sticky"))
				if err != nil || fi.Mode() != fs.ModeDir|0o777 {
					t.Errorf("sticky: mode %v, %v", fi.Mode(), err)
				}
			},
		},
		{
			name:    "file replaces a symlink instead of writing through it",
			prepare: func(t *testing.T, dest string) { mustSymlink(t, "../outside/victim", filepath.Join(dest, "f")) },
			entries: []tarEntry{file("f", "new")},
			check:   func(t *testing.T, dest string) { wantFile(t, dest, "f", "new", 0o644) },
		},
		{
			name:    "directory replaces a file",
			entries: []tarEntry{file("d", "x"), dir("d/"), file("d/f", "y")},
			check:   func(t *testing.T, dest string) { wantFile(t, dest, "d/f", "y", 0o644) },
		},
		{
			name:    "dot-dot entry",
			entries: []tarEntry{file("../evil", "x")},
			wantErr: ErrUnsafeEntry, errName: "../evil",
		},
		{
			name:    "dot-dot inside a path",
			entries: []tarEntry{file("a/../../evil", "x")},
			wantErr: ErrUnsafeEntry, errName: "a/../../evil",
		},
		{
			name:    "absolute path",
			entries: []tarEntry{file("/tmp/evil", "x")},
			wantErr: ErrUnsafeEntry, errName: "/tmp/evil",
		},
		{
			name:    "name too long",
			entries: []tarEntry{file(strings.Repeat("a/", 2049)+"f", "x")},
			wantErr: ErrUnsafeEntry, errName: strings.Repeat("a/", 2049) + "f",
		},
		{
			name:    "absolute symlink",
			entries: []tarEntry{symlink("passwd", "/etc/passwd")},
			wantErr: ErrUnsafeEntry, errName: "passwd",
		},
		{
			name:    "relative symlink escaping",
			entries: []tarEntry{dir("a/"), symlink("a/out", "../../outside")},
			wantErr: ErrUnsafeEntry, errName: "a/out",
		},
		{
			name:    "relative symlink escaping after a detour",
			entries: []tarEntry{symlink("out", "a/../../outside")},
			wantErr: ErrUnsafeEntry, errName: "out",
		},
		{
			name:    "file through an escaping symlink",
			entries: []tarEntry{symlink("out", "../outside"), file("out/victim", "pwned")},
			wantErr: ErrUnsafeEntry, errName: "out",
		},
		{
			name:    "file through an inside symlink",
			entries: []tarEntry{dir("real/"), symlink("link", "real"), file("link/f", "x")},
			wantErr: ErrUnsafeEntry, errName: "link/f",
		},
		{
			name:    "file through a pre-existing symlink",
			prepare: func(t *testing.T, dest string) { mustSymlink(t, "../outside", filepath.Join(dest, "pre")) },
			entries: []tarEntry{file("pre/victim", "pwned")},
			wantErr: ErrUnsafeEntry, errName: "pre/victim",
		},
		{
			name:    "symlink resolving outside through a pre-existing symlink",
			prepare: func(t *testing.T, dest string) { mustSymlink(t, "../outside", filepath.Join(dest, "pre")) },
			entries: []tarEntry{symlink("l", "pre/victim")},
			wantErr: ErrUnsafeEntry, errName: "l",
			check: func(t *testing.T, dest string) {
				if _, err := os.Lstat(filepath.Join(dest, "l")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("unsafe symlink l left behind: %v", err)
				}
			},
		},
		{
			name:    "hard link outside",
			entries: []tarEntry{hardlink("h", "../outside/victim")},
			wantErr: ErrUnsafeEntry, errName: "h",
		},
		{
			name:    "hard link absolute",
			entries: []tarEntry{hardlink("h", "/etc/passwd")},
			wantErr: ErrUnsafeEntry, errName: "h",
		},
		{
			name:    "hard link through an escaping symlink",
			prepare: func(t *testing.T, dest string) { mustSymlink(t, "../outside", filepath.Join(dest, "pre")) },
			entries: []tarEntry{hardlink("h", "pre/victim")},
			wantErr: ErrUnsafeEntry, errName: "h",
		},
		{
			name:    "hard link to a symlink",
			entries: []tarEntry{dir("a/b/"), symlink("a/b/l", "../x"), hardlink("l2", "a/b/l")},
			wantErr: ErrUnsafeEntry, errName: "l2",
		},
		{
			name:    "character device",
			entries: []tarEntry{{typ: tar.TypeChar, name: "null"}},
			wantErr: ErrUnsafeEntry, errName: "null",
		},
		{
			name:    "block device",
			entries: []tarEntry{{typ: tar.TypeBlock, name: "sda"}},
			wantErr: ErrUnsafeEntry, errName: "sda",
		},
		{
			name:    "fifo",
			entries: []tarEntry{{typ: tar.TypeFifo, name: "pipe"}},
			wantErr: ErrUnsafeEntry, errName: "pipe",
		},
		{
			name:    "too many entries",
			entries: []tarEntry{file("a", ""), file("b", ""), file("c", "")},
			limits:  Limits{MaxEntries: 2},
			wantErr: ErrLimitExceeded, errName: "c",
		},
		{
			name:    "too big",
			entries: []tarEntry{file("a", "12345"), file("b", "123456")},
			limits:  Limits{MaxBytes: 10},
			wantErr: ErrLimitExceeded, errName: "b",
		},
		{
			name:    "file over a directory",
			entries: []tarEntry{dir("d/"), file("d", "x")},
			errName: "d",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			if tt.prepare != nil {
				tt.prepare(t, sb.dest)
			}
			err := Unpack(bytes.NewReader(makeTar(t, !tt.plain, tt.entries...)), sb.dest, tt.limits)
			switch {
			case tt.wantErr == nil && tt.errName == "":
				if err != nil {
					t.Fatalf("Unpack: %v", err)
				}
			default:
				if err == nil {
					t.Fatal("Unpack succeeded, want an error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Unpack: %v, want %v", err, tt.wantErr)
				}
				var entryErr *EntryError
				if !errors.As(err, &entryErr) || entryErr.Name != tt.errName {
					t.Errorf("Unpack: %v, want an error naming entry %q", err, tt.errName)
				}
				if !strings.Contains(err.Error(), tt.errName) {
					t.Errorf("error %q does not mention %q", err, tt.errName)
				}
			}
			if tt.check != nil {
				tt.check(t, sb.dest)
			}
			sb.checkOutside(t)
		})
	}
}

func TestUnpackCorruptGzip(t *testing.T) {
	data := makeTar(t, true, file("a", strings.Repeat("x", 4096)))
	data[len(data)-5] ^= 0xff // the CRC-32 in the gzip trailer
	sb := newSandbox(t)
	if err := Unpack(bytes.NewReader(data), sb.dest, Limits{}); err == nil {
		t.Fatal("Unpack of a gzip stream with a bad checksum succeeded")
	}
}

func TestUnpackCreatesDir(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "new", "app")
	if err := Unpack(bytes.NewReader(makeTar(t, true, file("f", "x"))), dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dest, "f", "x", 0o644)
}

func TestLimitsValidate(t *testing.T) {
	if err := (Limits{MaxBytes: -1}).Validate(); err == nil {
		t.Error("negative MaxBytes accepted")
	}
	if err := (Limits{MaxEntries: -1}).Validate(); err == nil {
		t.Error("negative MaxEntries accepted")
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Error(err)
	}
}

func wantFile(t *testing.T, dir, name, body string, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("read %s: %v", name, err)
		return
	}
	if string(got) != body {
		t.Errorf("%s = %q, want %q", name, got, body)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode() != mode {
		t.Errorf("%s mode %v, want %v", name, fi.Mode(), mode)
	}
	if !fi.ModTime().Equal(testMtime) {
		t.Errorf("%s mtime %v, want %v", name, fi.ModTime(), testMtime)
	}
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// FuzzUnpack extracts archives described by a small script, one entry per
// line: "<type> <name> [<target>]" with type d (directory), f (file),
// l (symlink), h (hard link), c (device) or p (fifo). Whatever the
// script, nothing outside the target directory may change, no extracted
// file may keep setuid or setgid bits, and no symlink the archive left
// may resolve outside.
func FuzzUnpack(f *testing.F) {
	for _, seed := range []string{
		"d a/\nf a/b\nl a/c b\nh a/d a/b",
		"f ../evil",
		"l out ../outside\nf out/victim",
		"l l pre/victim",
		"f pre/victim",
		"h h pre/victim",
		"l x .\nl y x/..\nf y/z",
		"d a\nl a/b ..\nl c a/b/..",
		"l s sub\nd sub\nl sub/t ../pre\nf s/t/victim",
		"c dev\np fifo",
		"f /abs\nl abs2 /etc\nh abs3 /etc/passwd",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script string) {
		entries := parseScript(script)
		if entries == nil {
			return
		}
		data, ok := tryMakeTar(entries)
		if !ok {
			return
		}
		sb := newSandbox(t)
		mustSymlink(t, "../outside", filepath.Join(sb.dest, "pre"))
		_ = Unpack(bytes.NewReader(data), sb.dest, Limits{MaxBytes: 1 << 20, MaxEntries: 100})
		sb.checkOutside(t)
		err := filepath.WalkDir(sb.dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
				t.Errorf("%s has mode %v", p, fi.Mode())
			}
			if fi.Mode()&fs.ModeSymlink == 0 || p == filepath.Join(sb.dest, "pre") {
				return nil
			}
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling or looping
			}
			if resolved != sb.dest && !strings.HasPrefix(resolved, sb.dest+"/") {
				t.Errorf("symlink %s resolves to %s, outside %s", p, resolved, sb.dest)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func parseScript(script string) []tarEntry {
	var entries []tarEntry
	for line := range strings.SplitSeq(script, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		e := tarEntry{name: fields[1], mode: 0o6755}
		if len(fields) > 2 {
			e.link = fields[2]
		}
		switch fields[0] {
		case "d":
			e.typ = tar.TypeDir
		case "f":
			e.typ, e.body = tar.TypeReg, line
		case "l":
			e.typ = tar.TypeSymlink
		case "h":
			e.typ = tar.TypeLink
		case "c":
			e.typ = tar.TypeChar
		case "p":
			e.typ = tar.TypeFifo
		default:
			continue
		}
		entries = append(entries, e)
	}
	return entries
}

// tryMakeTar is makeTar for inputs the tar writer may refuse.
func tryMakeTar(entries []tarEntry) ([]byte, bool) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, ModTime: testMtime, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if tw.WriteHeader(hdr) != nil {
			return nil, false
		}
		if _, err := tw.Write([]byte(e.body)); err != nil && e.typ == tar.TypeReg {
			return nil, false
		}
	}
	if tw.Close() != nil {
		return nil, false
	}
	return buf.Bytes(), true
}
