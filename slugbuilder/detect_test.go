package slugbuilder

import (
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testStage returns a stage whose BUILD_DIR holds files (slash path ->
// contents; a name ending in "/" is a directory).
func testStage(t *testing.T, files map[string]string) *stage {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeFile(t, p, []byte(data))
	}
	return &stage{buildDir: dir, packsDir: t.TempDir(), out: newLineWriter(io.Discard), environ: os.Environ()}
}

func TestBuiltinDetect(t *testing.T) {
	for _, tc := range []struct {
		pack  string
		files map[string]string
		kind  string // "" when the buildpack says no
	}{
		{"go", map[string]string{"go.mod": "module x\n"}, "Go"},
		{"go", map[string]string{"main.go": "package main\n"}, ""},
		{"go", map[string]string{"sub/go.mod": "module x\n"}, ""},
		{"go", map[string]string{"go.mod/": ""}, ""},
		{"static", map[string]string{"index.html": "<p>"}, "Static HTML"},
		{"static", map[string]string{"public/": ""}, "Static HTML"},
		{"static", map[string]string{"public": "a file"}, ""},
		{"static", map[string]string{"docs/index.html": "<p>"}, ""},
		{"python", map[string]string{"requirements.txt": ""}, "Python"},
		{"python", map[string]string{"app.py": "print(1)\n"}, "Python"},
		{"python", map[string]string{"src/app.py": ""}, ""},
		{"python", map[string]string{"app.py/": ""}, ""},
		{"procfile", map[string]string{"Procfile": "web: ./run\n"}, "Procfile"},
		{"procfile", map[string]string{"procfile": "web: ./run\n"}, ""},
		{"procfile", map[string]string{"README": ""}, ""},
	} {
		t.Run(tc.pack+"/"+strings.Join(slices.Sorted(maps.Keys(tc.files)), ","), func(t *testing.T) {
			s := testStage(t, tc.files)
			kind, ok, err := newBuiltin(tc.pack).detect(t.Context(), s)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.kind != "") || (ok && kind != tc.kind) {
				t.Errorf("detect = %q %v, want %q", kind, ok, tc.kind)
			}
		})
	}
}

func TestSelectBuildpacks(t *testing.T) {
	for _, tc := range []struct {
		name         string
		files        map[string]string
		buildpackURL string
		want         []string
		wantErr      error
	}{
		{"go before static", map[string]string{"go.mod": "module x\n", "index.html": ""}, "", []string{"gantry/go"}, nil},
		{"static before python", map[string]string{"public/": "", "app.py": ""}, "", []string{"gantry/static"}, nil},
		{"python before procfile", map[string]string{"requirements.txt": "", "Procfile": "web: x\n"}, "", []string{"gantry/python"}, nil},
		{"procfile last", map[string]string{"Procfile": "web: x\n"}, "", []string{"gantry/procfile"}, nil},
		{"nothing", map[string]string{"README": ""}, "", nil, ErrNoBuildpack},
		{".buildpacks in order", map[string]string{".buildpacks": "gantry/python\ngantry/static\n"}, "", []string{"gantry/python", "gantry/static"}, nil},
		{"BUILDPACK_URL over .buildpacks", map[string]string{".buildpacks": "gantry/python\n", "go.mod": ""}, "gantry/static", []string{"gantry/static"}, nil},
		{"bad .buildpacks", map[string]string{".buildpacks": "ftp://x/y\n"}, "", nil, ErrBuildpackURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testStage(t, tc.files)
			b := &builder{cfg: Config{BuildpackURL: tc.buildpackURL}, out: s.out}
			packs, err := b.selectBuildpacks(t.Context(), s)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range packs {
				names = append(names, p.name())
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("buildpacks %v, want %v", names, tc.want)
			}
			// Detection already ran for a detected buildpack, not for named ones.
			if detected := len(packs) == 1 && packs[0].detected; detected != (tc.buildpackURL == "" && tc.files[".buildpacks"] == "") {
				t.Errorf("detected = %v", detected)
			}
		})
	}
}

// TestGitBuildpackDetect runs bin/detect of a custom buildpack checkout.
func TestGitBuildpackDetect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		detect string // the script; "" for none
		kind   string // "" when the buildpack says no
	}{
		{"says yes with a name", "#!/bin/sh\n[ -f \"$1/hello.txt\" ] && echo Greeting\n", "Greeting"},
		{"says yes silently", "#!/bin/sh\nexit 0\n", "pack"},
		{"says no", "#!/bin/sh\nexit 1\n", ""},
		{"no bin/detect", "", "pack"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testStage(t, map[string]string{"hello.txt": "hi"})
			g := &gitBuildpack{ref: buildpackRef{repo: "https://git.example.com/org/pack.git"}, dir: t.TempDir()}
			if tc.detect != "" {
				p := filepath.Join(g.dir, "bin", "detect")
				writeFile(t, p, []byte(tc.detect))
				if err := os.Chmod(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			kind, ok, err := g.detect(t.Context(), s)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.kind != "") || (ok && kind != tc.kind) {
				t.Errorf("detect = %q %v, want %q", kind, ok, tc.kind)
			}
		})
	}
}

func TestMergeProcessTypes(t *testing.T) {
	for _, tc := range []struct {
		name               string
		defaults, procfile map[string]string
		want               map[string]string
		fromDefaults       []string
	}{
		{"nothing", nil, nil, map[string]string{}, nil},
		{"defaults only", map[string]string{"web": "bin/web", "worker": "bin/w"}, nil,
			map[string]string{"web": "bin/web", "worker": "bin/w"}, []string{"web", "worker"}},
		{"Procfile only", nil, map[string]string{"web": "./run"}, map[string]string{"web": "./run"}, nil},
		{"Procfile wins", map[string]string{"web": "bin/web", "clock": "bin/clock"}, map[string]string{"web": "./run", "worker": "./work"},
			map[string]string{"web": "./run", "clock": "bin/clock", "worker": "./work"}, []string{"clock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, fromDefaults := mergeProcessTypes(tc.defaults, tc.procfile)
			if !maps.Equal(got, tc.want) || !slices.Equal(fromDefaults, tc.fromDefaults) {
				t.Errorf("got %v %v, want %v %v", got, fromDefaults, tc.want, tc.fromDefaults)
			}
		})
	}
}
