package blobstore

import (
	"errors"
	pathpkg "path"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	tests := []struct {
		name string
		path string
		ok   bool
	}{
		{"one segment", "slug.tgz", true},
		{"several segments", "slugs/demo/3f2a-9_b.tgz", true},
		{"dots inside names", "a.b/c.d.e", true},
		{"leading dot", ".cache/x", true},
		{"longest", strings.Repeat("a", MaxPathLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxPathLen+1), false},
		{"leading slash", "/a", false},
		{"trailing slash", "a/", false},
		{"double slash", "a//b", false},
		{"only slash", "/", false},
		{"dot segment", "a/./b", false},
		{"dot alone", ".", false},
		{"dot-dot segment", "a/../b", false},
		{"dot-dot alone", "..", false},
		{"dot-dot in a name", "a..b", false},
		{"space", "a b", false},
		{"backslash", `a\b`, false},
		{"percent", "a%2Fb", false},
		{"colon", "sha256:abc", false},
		{"non-ASCII", "café", false},
		{"NUL", "a\x00b", false},
		{"newline", "a\nb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePath(tt.path)
			if tt.ok && err != nil {
				t.Errorf("ValidatePath(%q) = %v, want nil", tt.path, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidPath) {
				t.Errorf("ValidatePath(%q) = %v, want ErrInvalidPath", tt.path, err)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"", "slugs/", "slugs/de", "a/b/c", "/"} {
		if err := validatePrefix(p); err != nil {
			t.Errorf("validatePrefix(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"a b", "a%", `a\`, strings.Repeat("a", MaxPathLen+1)} {
		if err := validatePrefix(p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("validatePrefix(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
}

// FuzzValidatePath checks ValidatePath against the rules written out
// plainly.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "a//b", "/a", "a/", ".", "..", "a/../b", "a..b",
		".a", "a.", "x_y-z.0", "a b", "é", strings.Repeat("ab/", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		err := ValidatePath(path)
		if err != nil && !errors.Is(err, ErrInvalidPath) {
			t.Fatalf("ValidatePath(%q) = %v, not an ErrInvalidPath", path, err)
		}
		if want := validByRules(path); (err == nil) != want {
			t.Fatalf("ValidatePath(%q) = %v, rules say valid=%v", path, err, want)
		}
		if err == nil {
			// A valid path is a valid prefix and survives a round trip
			// through its segments.
			if perr := validatePrefix(path); perr != nil {
				t.Fatalf("valid path %q is not a valid prefix: %v", path, perr)
			}
			if j := strings.Join(strings.Split(path, "/"), "/"); j != path {
				t.Fatalf("segments of %q join to %q", path, j)
			}
			// It names a file strictly inside any directory it is
			// joined to, and is already clean.
			if pathpkg.Clean(path) != path || pathpkg.IsAbs(path) {
				t.Fatalf("valid path %q is not clean and relative", path)
			}
			if j := filepath.Join("/base", path); !strings.HasPrefix(j, "/base/") {
				t.Fatalf("valid path %q escapes its base: %q", path, j)
			}
		}
	})
}

func validByRules(path string) bool {
	if path == "" || len(path) > MaxPathLen || strings.Contains(path, "..") {
		return false
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." {
			return false
		}
		for _, r := range seg {
			if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", r) {
				return false
			}
		}
	}
	return true
}
