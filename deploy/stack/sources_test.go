package stack

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseOneLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []aptSource
	}{
		{
			name: "plain",
			in:   "deb http://mirror.invalid/debian bookworm main contrib\n",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main", "contrib"}, Enabled: true}},
		},
		{
			name: "options and trailing comment",
			in:   "deb [ arch=amd64 signed-by=/usr/share/keyrings/k.gpg ] http://mirror.invalid/debian bookworm main # the archive\n",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true}},
		},
		{
			name: "options without spaces",
			in:   "deb [arch=amd64] http://mirror.invalid/debian bookworm main",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true}},
		},
		{
			name: "commented out entry and comment lines",
			in:   "# deb http://old.invalid/debian bookworm main\n   # indented comment\n\n",
		},
		{
			name: "deb-src kept as such",
			in:   "deb-src http://mirror.invalid/debian bookworm main\r\n",
			want: []aptSource{{Types: []string{"deb-src"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true}},
		},
		{
			name: "flat repository without components",
			in:   "deb http://flat.invalid/repo ./",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://flat.invalid/repo"}, Suites: []string{"./"}, Components: []string{}, Enabled: true}},
		},
		{
			name: "malformed lines skipped",
			in:   "deb\ndeb http://only-uri.invalid\ndeb [arch=amd64 http://unclosed.invalid bookworm main\nrpm http://other.invalid x y\n",
		},
		{
			name: "several entries keep their order",
			in:   "deb http://a.invalid/debian bookworm main\n\tdeb  http://b.invalid/debian   bookworm-updates   main\n",
			want: []aptSource{
				{Types: []string{"deb"}, URIs: []string{"http://a.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true},
				{Types: []string{"deb"}, URIs: []string{"http://b.invalid/debian"}, Suites: []string{"bookworm-updates"}, Components: []string{"main"}, Enabled: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOneLine(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseOneLine:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseDeb822(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []aptSource
	}{
		{
			name: "two stanzas with comments",
			in: "Types: deb\n# http://snapshot.invalid/archive/debian/20250520T000000Z\nURIs: http://mirror.invalid/debian\n" +
				"Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n" +
				"Types: deb\nURIs: http://security.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n",
			want: []aptSource{
				{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm", "bookworm-updates"}, Components: []string{"main"}, Enabled: true},
				{Types: []string{"deb"}, URIs: []string{"http://security.invalid/debian-security"}, Suites: []string{"bookworm-security"}, Components: []string{"main"}, Enabled: true},
			},
		},
		{
			name: "case-insensitive fields, several types and URIs",
			in:   "types: deb deb-src\nuris: http://a.invalid/debian http://b.invalid/debian\nSUITES: bookworm\ncomponents: main\n",
			want: []aptSource{{Types: []string{"deb", "deb-src"}, URIs: []string{"http://a.invalid/debian", "http://b.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true}},
		},
		{
			name: "continuation lines",
			in:   "Types: deb\nURIs:\n http://a.invalid/debian\n\thttp://b.invalid/debian\nSuites: bookworm\nComponents: main\n contrib\n",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://a.invalid/debian", "http://b.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main", "contrib"}, Enabled: true}},
		},
		{
			name: "embedded key block does not end the stanza",
			in: "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\nComponents: main\n" +
				"Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL\n -----END PGP PUBLIC KEY BLOCK-----\n",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true}},
		},
		{
			name: "disabled stanza",
			in:   "Enabled: no\nTypes: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\nComponents: main\n",
			want: []aptSource{{Types: []string{"deb"}, URIs: []string{"http://off.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: false}},
		},
		{
			name: "blank lines with white space separate stanzas",
			in:   "Types: deb\nURIs: http://a.invalid/debian\nSuites: bookworm\nComponents: main\n  \t\nTypes: deb\nURIs: http://b.invalid/debian\nSuites: trixie\nComponents: main\n\n\n",
			want: []aptSource{
				{Types: []string{"deb"}, URIs: []string{"http://a.invalid/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}, Enabled: true},
				{Types: []string{"deb"}, URIs: []string{"http://b.invalid/debian"}, Suites: []string{"trixie"}, Components: []string{"main"}, Enabled: true},
			},
		},
		{
			name: "incomplete stanzas skipped",
			in:   "Types: deb\nSuites: bookworm\n\nURIs: http://a.invalid/debian\nSuites: bookworm\n\nnot a field\n",
		},
		{
			name: "fully commented out stanza",
			in:   "# Types: deb\n# URIs: http://a.invalid/debian\n# Suites: bookworm\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseDeb822(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseDeb822:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseAptBool(t *testing.T) {
	tests := []struct {
		in   string
		def  bool
		want bool
	}{
		{"", true, true},
		{"no", true, false},
		{"No", true, false},
		{" false ", true, false},
		{"yes", false, true},
		{"maybe", true, true},
		{"maybe", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := parseAptBool(tt.in, tt.def); got != tt.want {
				t.Errorf("parseAptBool(%q, %v) = %v, want %v", tt.in, tt.def, got, tt.want)
			}
		})
	}
}

func TestMainArchive(t *testing.T) {
	src := func(typ, uri, suite string, components ...string) aptSource {
		return aptSource{Types: []string{typ}, URIs: []string{uri}, Suites: []string{suite}, Components: components, Enabled: true}
	}
	disabled := src("deb", "http://off.invalid/debian", "bookworm", "main")
	disabled.Enabled = false
	tests := []struct {
		name    string
		sources []aptSource
		want    string
	}{
		{"security first, main second", []aptSource{
			src("deb", "http://security.invalid/debian-security", "bookworm-security", "main"),
			src("deb", "http://mirror.invalid/debian", "bookworm", "main"),
		}, "http://mirror.invalid/debian"},
		{"first of two mirrors", []aptSource{
			src("deb", "http://a.invalid/debian", "bookworm", "main"),
			src("deb", "http://b.invalid/debian", "bookworm", "main"),
		}, "http://a.invalid/debian"},
		{"updates and backports are not the archive", []aptSource{
			src("deb", "http://mirror.invalid/debian", "bookworm-updates", "main"),
			src("deb", "http://mirror.invalid/debian", "bookworm-backports", "main"),
		}, ""},
		{"source entries skipped", []aptSource{
			src("deb-src", "http://src.invalid/debian", "bookworm", "main"),
			src("deb", "http://mirror.invalid/debian", "bookworm", "main"),
		}, "http://mirror.invalid/debian"},
		{"disabled skipped", []aptSource{disabled, src("deb", "http://on.invalid/debian", "bookworm", "main")}, "http://on.invalid/debian"},
		{"third-party suites and components skipped", []aptSource{
			src("deb", "https://vendor.invalid/node", "nodistro", "main"),
			src("deb", "https://vendor.invalid/docker", "bookworm", "stable"),
			src("deb", "https://mirror.invalid/debian", "stable", "main", "non-free"),
		}, "https://mirror.invalid/debian"},
		{"other Debian release", []aptSource{src("deb", "http://mirror.invalid/debian", "trixie", "main")}, "http://mirror.invalid/debian"},
		{"unusable schemes skipped", []aptSource{
			src("deb", "cdrom:[Debian 12]/", "bookworm", "main"),
			src("deb", "mirror+file:/etc/apt/mirrors.txt", "bookworm", "main"),
			src("deb", "http://", "bookworm", "main"),
			src("deb", "file:/srv/debian", "bookworm", "main"),
		}, "file:/srv/debian"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := mainArchive(tt.sources)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("mainArchive = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestFindMirror(t *testing.T) {
	tests := []struct {
		dir     string
		want    string
		wantErr error
	}{
		{"deb822", "http://mirror.invalid/debian", nil},
		{"oneline", "http://mirror.invalid/debian/", nil},
		{"mixed", "http://sources.invalid/debian", nil}, // sources.list, then sources.list.d by name
		{"disabled", "http://on.invalid/debian", nil},
		{"security-only", "", ErrNoMirror},
		{"empty", "", ErrNoMirror},
		{"missing", "", ErrNoMirror},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			got, err := findMirror(filepath.Join("testdata", "apt", tt.dir))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("findMirror err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("findMirror = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFindMirrorUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where apt expects a file cannot be read.
	if err := os.Mkdir(filepath.Join(dir, "sources.list"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := findMirror(dir); err == nil || errors.Is(err, ErrNoMirror) {
		t.Fatalf("findMirror err = %v, want a read error", err)
	}
}

func FuzzAptSources(f *testing.F) {
	for _, dir := range []string{"deb822", "oneline", "mixed", "disabled", "security-only"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "apt", dir, "*"))
		more, _ := filepath.Glob(filepath.Join("testdata", "apt", dir, "sources.list.d", "*"))
		for _, name := range append(files, more...) {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(string(data))
			}
		}
	}
	f.Add("deb [arch=amd64 http://x.invalid bookworm main\nTypes:\n \n")
	f.Add("Types: deb\nURIs: http://a.invalid/debian\n\tSuites: bookworm\nComponents: main\n")
	f.Fuzz(func(t *testing.T, data string) {
		for name, parse := range map[string]func(string) []aptSource{"one-line": parseOneLine, "deb822": parseDeb822} {
			sources := parse(data)
			for _, s := range sources {
				if len(s.Types) == 0 || len(s.URIs) == 0 || len(s.Suites) == 0 {
					t.Fatalf("%s: incomplete source %#v", name, s)
				}
				for _, v := range slices.Concat(s.Types, s.URIs, s.Suites, s.Components) {
					if v == "" || strings.ContainsAny(v, " \t\r\n") {
						t.Fatalf("%s: bad value %q in %#v", name, v, s)
					}
				}
			}
			uri, ok := mainArchive(sources)
			if !ok {
				continue
			}
			if !usableMirror(uri) || !slices.ContainsFunc(sources, func(s aptSource) bool { return slices.Contains(s.URIs, uri) }) {
				t.Fatalf("%s: mainArchive returned %q, not a usable URI of the sources", name, uri)
			}
		}
	})
}
