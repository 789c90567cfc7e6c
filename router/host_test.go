package router

import (
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"example.com", "example.com", true},
		{"Example.COM", "example.com", true},
		{"example.com:8080", "example.com", true},
		{"example.com.", "example.com", true},
		{"Example.com.:443", "example.com", true},
		{"example.com:", "example.com", true},
		{"localhost", "localhost", true},
		{"127.0.0.1:80", "127.0.0.1", true},
		{"[::1]", "[::1]", true},
		{"[::1]:8080", "[::1]", true},
		{"[FE80::1]:80", "[fe80::1]", true},
		{"", "", false},
		{":80", "", false},
		{".", "", false},
		{".example.com", "", false},
		{"a..b", "", false},
		{"example.com..", "", false},
		{"::1", "", false},
		{"[::1", "", false},
		{"[]:80", "", false},
		{"[::1]x", "", false},
		{"[zz::1]", "", false},
		{"example.com:80a", "", false},
		{"example.com:123456", "", false},
		{"exa mple.com", "", false},
		{"user@example.com", "", false},
		{"*.example.com", "", false},
		{"a.*.example.com", "", false},
		{"*", "", false},
		{"example.com/path", "", false},
		{"ex\x00ample", "", false},
		{"ex\xffample", "", false},
		{strings.Repeat("a", 254), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseHost(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseHost(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseHostDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := parseHost("app.example.com:8080"); !ok {
			t.Fatal("not parsed")
		}
	})
	if allocs != 0 {
		t.Errorf("parseHost allocates %v times per call", allocs)
	}
}

func TestLookup(t *testing.T) {
	mk := func(domain string) *target {
		return &target{route: &routeInfo{}}
	}
	exact, wild, deep := mk("a.example.com"), mk("*.example.com"), mk("*.b.example.com")
	tbl := &table{
		exact:    map[string]*target{"a.example.com": exact, "example.com": mk("example.com")},
		wildcard: map[string]*target{"example.com": wild, "b.example.com": deep},
	}
	tests := []struct {
		host string
		want *target
	}{
		{"a.example.com", exact},  // exact wins over the wildcard
		{"z.example.com", wild},   // one label under the wildcard
		{"x.b.example.com", deep}, // the deeper wildcard
		{"x.y.example.com", nil},  // two labels: no match
		{"example.org", nil},      // unknown
		{"com", nil},              // no parent
		{"example.com", tbl.exact["example.com"]},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := tbl.lookup(tt.host); got != tt.want {
				t.Errorf("lookup(%q) = %p, want %p", tt.host, got, tt.want)
			}
		})
	}
}

// FuzzParseHost checks that parseHost never panics, and that what it
// accepts is normal: lower-case, no port, no trailing dot, and a fixed
// point of parseHost.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"example.com", "A.B:80", "[::1]:8080", "x.", "a..b", "[", "]:", ":", "*.x", "é.com", "1.2.3.4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := parseHost(s)
		if !ok {
			if h != "" {
				t.Fatalf("parseHost(%q) rejected but returned %q", s, h)
			}
			return
		}
		if h == "" || h != strings.ToLower(h) || strings.HasSuffix(h, ".") {
			t.Fatalf("parseHost(%q) = %q: not normal", s, h)
		}
		if !strings.HasPrefix(h, "[") && strings.Contains(h, ":") {
			t.Fatalf("parseHost(%q) = %q: kept a port", s, h)
		}
		again, ok := parseHost(h)
		if !ok || again != h {
			t.Fatalf("parseHost(%q) = %q, but parseHost(%q) = %q, %v", s, h, h, again, ok)
		}
		if _, ok := parseHost(h + ":80"); !ok {
			t.Fatalf("parseHost(%q) accepted, but not with a port", h)
		}
		wildcardParent(h) // must not panic
	})
}
