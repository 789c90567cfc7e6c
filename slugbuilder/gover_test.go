package slugbuilder

import (
	"errors"
	"strings"
	"testing"
)

func TestParseGoMod(t *testing.T) {
	for _, tc := range []struct {
		name, in      string
		goLine, tLine string
		wantErr       string
	}{
		{"both", "module x\n\ngo 1.26\n\ntoolchain go1.26.8\n", "1.26", "go1.26.8", ""},
		{"patch, comments", "// go 1.1\nmodule x // toolchain go1.2\ngo 1.25.3 // pinned\n", "1.25.3", "", ""},
		{"blocks skipped", "module x\nrequire (\n\tgo 1.0\n\texample.com/toolchain v1\n)\ngo 1.26rc2\n", "1.26rc2", "", ""},
		{"toolchain default", "module x\ngo 1.26\ntoolchain default\n", "1.26", "", ""},
		{"no go line", "module x\n", "", "", "has no go line"},
		{"bad go line", "module x\ngo one\n", "", "", "line 2: \"one\" is not a Go version"},
		{"bad toolchain", "module x\ngo 1.26\ntoolchain gccgo\n", "", "", "line 3: toolchain \"gccgo\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseGoMod([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.goLine != tc.goLine || m.toolchainLine != tc.tLine {
				t.Errorf("got %+v", m)
			}
		})
	}
}

func TestChooseToolchain(t *testing.T) {
	for _, tc := range []struct {
		goLine, tLine string
		want          string
		newest        bool
	}{
		{"1.26", "go1.26.8", "go1.26.8", false},
		{"1.26", "", "go1.26", true},
		{"1.25.4", "", "go1.25.4", false},
		{"1.26.2", "go1.26.1", "go1.26.2", false}, // the go line wins over an older toolchain
		{"1.27rc1", "", "go1.27rc1", false},
		{"1.26", "go1.27rc2", "go1.27rc2", false},
		{"1.26rc1", "go1.26.0", "go1.26.0", false},
	} {
		t.Run(tc.goLine+"/"+tc.tLine, func(t *testing.T) {
			c, err := chooseToolchain(goMod{goLine: tc.goLine, toolchainLine: tc.tLine})
			if err != nil {
				t.Fatal(err)
			}
			if c.version.String() != tc.want || c.newestOf != tc.newest {
				t.Errorf("got %s (newest %v), want %s (newest %v)", c.version, c.newestOf, tc.want, tc.newest)
			}
		})
	}
}

func TestNewestRelease(t *testing.T) {
	list := []byte(`v0.0.1-go1.26.9.linux-amd64
v0.0.1-go1.26.10.linux-amd64
v0.0.1-go1.26.11.linux-arm64
v0.0.1-go1.27rc1.linux-amd64
v0.0.1-go1.26.2.linux-amd64
v0.0.1-go1.25.20.linux-amd64
v0.0.1-go1.26.12.darwin-amd64
junk
`)
	want, _ := parseGoVersion("1.26")
	v, ok := newestRelease(list, want, "amd64")
	if !ok || v.String() != "go1.26.10" {
		t.Errorf("got %s %v, want go1.26.10", v, ok)
	}
	if v, ok := newestRelease(list, want, "arm64"); !ok || v.String() != "go1.26.11" {
		t.Errorf("arm64: got %s %v", v, ok)
	}
	want, _ = parseGoVersion("1.27")
	if v, ok := newestRelease(list, want, "amd64"); ok {
		t.Errorf("1.27 has only an rc, got %s", v)
	}
}

func TestCompareGoVersions(t *testing.T) {
	ordered := []string{"1.25.9", "1.26", "1.26beta1", "1.26rc1", "1.26rc2", "1.26.0", "1.26.2", "1.26.10", "1.27rc1"}
	for i := 1; i < len(ordered); i++ {
		a, _ := parseGoVersion(ordered[i-1])
		b, _ := parseGoVersion(ordered[i])
		if compareGoVersions(a, b) >= 0 || compareGoVersions(b, a) <= 0 {
			t.Errorf("%s is not before %s", ordered[i-1], ordered[i])
		}
	}
	for _, bad := range []string{"", "1", "2.0", "1.26.", "1.26.x", "go", "1.26rc", "1.26-rc1", " 1.26"} {
		if _, err := parseGoVersion(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseGoProxy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []goProxy
		wantErr string
	}{
		{in: "https://proxy.example", want: []goProxy{{url: "https://proxy.example"}}},
		{in: "https://a.example/,direct", want: []goProxy{{url: "https://a.example"}}},
		{in: "https://a.example|http://b.example:8080/go,https://c.example", want: []goProxy{{url: "https://a.example", anyError: true}, {url: "http://b.example:8080/go"}, {url: "https://c.example"}}},
		{in: "https://a.example,off,https://b.example", want: []goProxy{{url: "https://a.example"}}},
		{in: "", wantErr: "GOPROXY is not set"},
		{in: "off", wantErr: `GOPROXY is "off", which names no proxy URL`},
		{in: "direct", wantErr: "names no proxy URL"},
		{in: "proxy.example", wantErr: "is not an http(s) URL"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseGoProxy(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, errGoProxy) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("entry %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestNeededToBuild(t *testing.T) {
	for name, want := range map[string]bool{
		"bin/go":                             true,
		"pkg/tool/linux_amd64/compile":       true,
		"src/net/http/server.go":             true,
		"src/runtime/cgo/gcc_linux_amd64.c":  true,
		"src/net/http/server_test.go":        false,
		"src/net/http/testdata/file":         false,
		"src/cmd/go/main.go":                 false,
		"src/cmd/compile/internal/x/main.go": false,
		"lib/time/zoneinfo.zip":              true,
		"go.env":                             true,
		"src/testdata/x":                     false,
		"bin/gofmt":                          false,
		"pkg/tool/linux_amd64/vet":           false,
		"pkg/tool/linux_amd64/cover":         false,
		"pkg/tool/linux_amd64/fix":           false,
		"pkg/tool/linux_amd64/link":          true,
		"pkg/tool/linux_amd64/preprofile":    true,
		"pkg/tool/linux_amd64/asm":           true,
	} {
		if got := neededToBuild(name); got != want {
			t.Errorf("neededToBuild(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzParseGoMod checks that an accepted go.mod always yields a toolchain
// choice whose name parses back to the same version.
func FuzzParseGoMod(f *testing.F) {
	for _, seed := range []string{
		"module x\n\ngo 1.26\n\ntoolchain go1.26.8\n",
		"module x\ngo 1.27rc1 // comment\nrequire (\n\tgo 1.2\n)\n",
		"go 1.25.3\ntoolchain default\n",
		"toolchain go1.26.8\n",
		"go 1.26\ntoolchain 1.26.8\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseGoMod(data)
		if err != nil {
			return
		}
		c, err := chooseToolchain(m)
		if err != nil {
			t.Fatalf("accepted go.mod %q has no toolchain: %v", data, err)
		}
		again, err := parseGoVersion(c.version.String())
		if err != nil || again != c.version {
			t.Fatalf("%v does not parse back: %v %v", c.version, again, err)
		}
	})
}

// FuzzParseGoProxy checks that every proxy a GOPROXY value is accepted with
// is an http(s) URL without a trailing slash.
func FuzzParseGoProxy(f *testing.F) {
	for _, seed := range []string{"https://proxy.example,direct", "https://a|http://b:8080/go,off,https://c", "direct", "", "off"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		proxies, err := parseGoProxy(v)
		if err != nil {
			if !errors.Is(err, errGoProxy) {
				t.Fatalf("err = %v, want errGoProxy", err)
			}
			return
		}
		if len(proxies) == 0 {
			t.Fatal("no proxies and no error")
		}
		for _, p := range proxies {
			if !strings.HasPrefix(p.url, "https://") && !strings.HasPrefix(p.url, "http://") || strings.HasSuffix(p.url, "/") {
				t.Fatalf("accepted proxy %q", p.url)
			}
		}
	})
}
