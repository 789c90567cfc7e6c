package slugbuilder

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSlugignoreMatch(t *testing.T) {
	type check struct {
		path  string
		isDir bool
		want  bool
	}
	for _, tc := range []struct {
		name     string
		patterns string
		checks   []check
	}{
		{"name at any depth", "*.log", []check{
			{"app.log", false, true}, {"var/log/app.log", false, true}, {"app.log.1", false, false}, {"log", true, false},
		}},
		{"anchored", "/docs", []check{
			{"docs", true, true}, {"docs/a.md", false, true}, {"src/docs", true, false}, {"docsx", false, false},
		}},
		{"inner slash anchors", "spec/fixtures", []check{
			{"spec/fixtures", true, true}, {"spec/fixtures/a.json", false, true}, {"app/spec/fixtures", true, false},
		}},
		{"directories only", "tmp/", []check{
			{"tmp", true, true}, {"a/b/tmp", true, true}, {"tmp", false, false}, {"a/tmp", false, false}, {"tmp/x", false, true},
		}},
		{"double star prefix", "**/test", []check{
			{"test", true, true}, {"a/test", false, true}, {"a/b/c/test", true, true}, {"a/test/x", false, true}, {"a/testing", true, false},
		}},
		{"double star middle", "assets/**/*.psd", []check{
			{"assets/a.psd", false, true}, {"assets/x/y/a.psd", false, true}, {"b/assets/a.psd", false, false}, {"assets/a.png", false, false},
		}},
		{"double star suffix", "vendor/**", []check{
			{"vendor", true, false}, {"vendor/a", false, true}, {"vendor/a/b/c", false, true}, {"x/vendor/a", false, false},
		}},
		{"question and class", "/file?.[ch]", []check{
			{"file1.c", false, true}, {"file2.h", false, true}, {"file10.c", false, false}, {"file1.o", false, false}, {"x/file1.c", false, false},
		}},
		{"negation", "*.md\n!README.md", []check{
			{"a.md", false, true}, {"README.md", false, false}, {"docs/README.md", false, false},
		}},
		{"no re-include inside an excluded directory", "/docs\n!/docs/keep.md", []check{
			{"docs/keep.md", false, true},
		}},
		{"comments, blanks, escapes", "# comment\n\n   \n\\#hash\n\\!bang\n", []check{
			{"#hash", false, true}, {"!bang", false, true}, {"comment", false, false}, {"# comment", false, false},
		}},
		{"star does not cross slashes", "/a*b", []check{
			{"ab", false, true}, {"axxb", false, true}, {"a/b", false, false},
		}},
		{"escaped star", `/a\*`, []check{
			{"a*", false, true}, {"ab", false, false},
		}},
		{"dot segments", "./build/", []check{
			{"build", true, true}, {"x/build", true, false},
		}},
		{"root alone matches nothing", "/\n!\n", []check{
			{"a", false, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ig, err := parseSlugignore([]byte(tc.patterns))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				if got := ig.match(c.path, c.isDir); got != c.want {
					t.Errorf("match(%q, dir=%v) = %v, want %v", c.path, c.isDir, got, c.want)
				}
			}
		})
	}
}

func TestSlugignoreErrors(t *testing.T) {
	for _, in := range []string{"ok\n[abc", "ok\n../secrets", "a/**/../b"} {
		if _, err := parseSlugignore([]byte(in)); err == nil || !strings.Contains(err.Error(), ".slugignore line") {
			t.Errorf("parse %q: err = %v, want one naming the line", in, err)
		}
	}
}

func TestApplySlugignore(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"keep.txt", "a.log", "logs/b.log", "logs/keep", "cache/x/y", "src/cache/z"} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "precious.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	ig, err := parseSlugignore([]byte("*.log\n/cache/\nlink\n"))
	if err != nil {
		t.Fatal(err)
	}
	removed, err := applySlugignore(dir, ig)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.log", "cache", "link", "logs/b.log"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, f := range []string{"keep.txt", "logs/keep", "src/cache/z"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s was removed: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "precious.log")); err != nil {
		t.Errorf("a file outside the app was removed through a link: %v", err)
	}
}

// FuzzSlugignore checks that parsing and matching never panic and that a
// pattern made of a path itself, anchored and escaped, always matches it
// and only it, whatever patterns precede it.
func FuzzSlugignore(f *testing.F) {
	for _, seed := range [][2]string{
		{"*.log\n/docs\n!keep.log\n**/tmp/\nassets/**/*.psd\n", "assets/a/b.psd"},
		{"vendor/**\n", "vendor/x"},
		{"[a-z]?*\n", "ab"},
		{"\\#x\n\\!y\n", "#x"},
		{"**/**/**/a", "b/a"},
	} {
		f.Add(seed[0], seed[1], false)
	}
	f.Fuzz(func(t *testing.T, patterns, path string, isDir bool) {
		ig, err := parseSlugignore([]byte(patterns))
		if err == nil {
			ig.match(normalize(path), isDir)
		}
		p := normalize(path)
		if p == "" || strings.ContainsAny(p, "\n\r") || !utf8.ValidString(p) {
			return
		}
		var esc strings.Builder
		for _, r := range p {
			if strings.ContainsRune(`*?[]\`, r) {
				esc.WriteByte('\\')
			}
			esc.WriteRune(r)
		}
		literal := "/" + esc.String()
		if strings.TrimSpace(literal) != literal {
			return // surrounding spaces are trimmed from patterns
		}
		ig, err = parseSlugignore([]byte(literal))
		if err != nil {
			t.Fatalf("parse %q: %v", literal, err)
		}
		if !ig.match(p, isDir) {
			t.Fatalf("%q does not match %q", literal, p)
		}
		if ig.match(p+"x", isDir) {
			t.Fatalf("%q matches %q", literal, p+"x")
		}
	})
}

// normalize turns s into a clean relative slash path: no empty, "." or ".."
// segments.
func normalize(s string) string {
	var segs []string
	for _, seg := range strings.Split(s, "/") {
		if seg != "" && seg != "." && seg != ".." {
			segs = append(segs, seg)
		}
	}
	return strings.Join(segs, "/")
}
