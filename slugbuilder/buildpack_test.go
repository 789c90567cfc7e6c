package slugbuilder

import (
	"encoding/pem"
	"errors"
	"io"
	"maps"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseBuildpackRef(t *testing.T) {
	for _, tc := range []struct {
		in        string
		builtin   string
		repo, ref string
		wantErr   bool
	}{
		{in: "gantry/go", builtin: "go"},
		{in: "gantry/procfile", builtin: "procfile"},
		{in: "https://git.example.com/org/pack.git", repo: "https://git.example.com/org/pack.git"},
		{in: "https://git.example.com/org/pack.git#v1.2.0", repo: "https://git.example.com/org/pack.git", ref: "v1.2.0"},
		{in: "https://token@git.example.com/org/pack#release/2", repo: "https://token@git.example.com/org/pack", ref: "release/2"},
		{in: "gantry/ruby", wantErr: true},
		{in: "http://git.example.com/org/pack.git", wantErr: true},
		{in: "git://git.example.com/org/pack.git", wantErr: true},
		{in: "git@git.example.com:org/pack.git", wantErr: true},
		{in: "ssh://git@git.example.com/org/pack.git", wantErr: true},
		{in: "file:///srv/pack", wantErr: true},
		{in: "/srv/pack", wantErr: true},
		{in: "pack", wantErr: true},
		{in: "https://git.example.com", wantErr: true},
		{in: "https:pack", wantErr: true},
		{in: "https://git.example.com/pack#-b", wantErr: true},
		{in: "https://git.example.com/pack#a..b", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ref, err := parseBuildpackRef(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrBuildpackURL) {
					t.Fatalf("err = %v, want ErrBuildpackURL", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ref.builtin != tc.builtin || ref.repo != tc.repo || ref.ref != tc.ref {
				t.Errorf("got %+v", ref)
			}
		})
	}
}

func TestParseBuildpacksFile(t *testing.T) {
	refs, err := parseBuildpacksFile([]byte("# build steps\n\ngantry/static\r\n  https://git.example.com/pack.git#main  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0].builtin != "static" || refs[1].repo != "https://git.example.com/pack.git" || refs[1].ref != "main" {
		t.Errorf("got %+v", refs)
	}
	if _, err := parseBuildpacksFile([]byte("# nothing\n")); err == nil {
		t.Error("an empty .buildpacks was accepted")
	}
}

// gitServer serves the git repositories under root over HTTPS with git's
// own http-backend, and makes the git client trust its certificate.
func gitServer(t *testing.T, root string) string {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	srv := httptest.NewTLSServer(&cgi.Handler{
		Path:   filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
		Stderr: io.Discard,
	})
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GIT_SSL_CAINFO", ca)
	return srv.URL
}

// git runs git in dir.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// customBuildpack makes a bare repository root/pack.git holding a shell
// buildpack on its branch main.
func customBuildpack(t *testing.T, root string) {
	t.Helper()
	work := t.TempDir()
	scripts := map[string]string{
		"bin/detect": "#!/bin/sh\n[ -f \"$1/hello.txt\" ] || exit 1\necho Greeting\n",
		"bin/compile": `#!/bin/sh
set -e
build=$1 cache=$2 env=$3
echo "-----> Writing the greeter"
echo "greeting from ENV_DIR: $(cat "$env/GREETING")"
echo "in the environment: GREETING=${GREETING:-unset} HOME=$HOME"
touch "$HOME/.written-to-home"
mkdir -p "$build/bin"
printf '#!/bin/sh\necho %s\n' "$(cat "$env/GREETING")" > "$build/bin/greet"
chmod +x "$build/bin/greet"
runs=$(cat "$cache/runs" 2>/dev/null || echo 0)
echo $((runs + 1)) > "$cache/runs"
echo "compiled $((runs + 1)) times"
`,
		"bin/release": "#!/bin/sh\ncat <<'EOF'\n---\naddons: []\nconfig_vars:\n  GREETER: \"yes\"\ndefault_process_types:\n  web: bin/greet\n  greeter: 'bin/greet # once'\nEOF\n",
	}
	for name, body := range scripts {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git(t, work, "init", "--quiet")
	git(t, work, "add", ".")
	git(t, work, "commit", "--quiet", "-m", "buildpack")
	git(t, root, "clone", "--quiet", "--bare", work, "pack.git")
}

func TestCustomBuildpack(t *testing.T) {
	needsTools(t)
	root := t.TempDir()
	customBuildpack(t, root)
	packURL := gitServer(t, root) + "/pack.git#main"

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache.tgz")
	edit := func(c *Config) {
		c.BuildpackURL = packURL
		c.Env = map[string]string{"GREETING": "hello there"}
		withCache(cache)(c)
	}
	var b testBuild
	for run := 1; run <= 2; run++ {
		b = build(t, dir, edit)
		if b.err != nil {
			t.Fatalf("build %d: %v\n%s", run, b.err, b.out)
		}
		for _, want := range []string{
			"-----> Fetching buildpack " + packURL + "\n",
			"-----> Greeting app detected\n",
			"-----> Writing the greeter\n",
			"       greeting from ENV_DIR: hello there\n",
			"       in the environment: GREETING=unset HOME=" + filepath.Join(b.cfg.WorkDir, "home") + "\n",
			"       compiled " + string(rune('0'+run)) + " times\n",
			"       Default types for buildpack -> greeter, web\n",
		} {
			if !strings.Contains(b.out, want) {
				t.Errorf("build %d output lacks %q:\n%s", run, want, b.out)
			}
		}
		if !exists(t, filepath.Join(b.cfg.WorkDir, "home", ".written-to-home")) {
			t.Error("HOME of the buildpack is not WorkDir/home")
		}
		if want := map[string]string{"web": "bin/greet", "greeter": "bin/greet # once"}; !maps.Equal(b.res.ProcessTypes, want) {
			t.Errorf("process types %v, want %v", b.res.ProcessTypes, want)
		}
		if !slices.Equal(b.res.Buildpacks, []string{packURL}) {
			t.Errorf("buildpacks %v", b.res.Buildpacks)
		}
	}
	if e := readSlug(t, b)["bin/greet"]; !strings.Contains(e.data, "echo hello there") || e.mode&0o111 == 0 {
		t.Errorf("bin/greet in the slug: %+v", e)
	}

	// Several buildpacks from .buildpacks, a built-in one named too: the
	// later default process types win, the Procfile over them all.
	if err := os.WriteFile(filepath.Join(dir, ".buildpacks"), []byte(packURL+"\ngantry/static\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "public"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("greeter: bin/greet twice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b = build(t, dir, func(c *Config) { c.Env = map[string]string{"GREETING": "hi"} })
	if b.err != nil {
		t.Fatalf("build: %v\n%s", b.err, b.out)
	}
	if want := map[string]string{"web": staticCommand, "greeter": "bin/greet twice"}; !maps.Equal(b.res.ProcessTypes, want) {
		t.Errorf("process types %v, want %v", b.res.ProcessTypes, want)
	}
	if !slices.Equal(b.res.Buildpacks, []string{packURL, "gantry/static"}) {
		t.Errorf("buildpacks %v", b.res.Buildpacks)
	}

	// A buildpack whose detect says no fails the build.
	if err := os.Remove(filepath.Join(dir, "hello.txt")); err != nil {
		t.Fatal(err)
	}
	b = build(t, dir, func(c *Config) { c.Env = map[string]string{"GREETING": "hi"} })
	if !errors.Is(b.err, ErrNoBuildpack) || !strings.Contains(b.out, "not compatible with buildpack") {
		t.Fatalf("err = %v, want ErrNoBuildpack\n%s", b.err, b.out)
	}
}

func TestCustomBuildpackMissing(t *testing.T) {
	needsTools(t)
	url := gitServer(t, t.TempDir()) + "/nothing.git"
	b := build(t, filepath.Join("testdata", "apps", "static"), func(c *Config) { c.BuildpackURL = url })
	if b.err == nil || !strings.Contains(b.out, " !     fetch buildpack "+url) {
		t.Fatalf("err = %v\n%s", b.err, b.out)
	}
}

// FuzzParseBuildpacksFile checks that every buildpack a .buildpacks file is
// accepted with is a built-in one or an https URL whose ref cannot pass for
// a git option, and that the error of a refused line names the line.
// TestBuildpackURLErrorShowsURLAsWritten checks that a refused
// BUILDPACK_URL is shown as the user wrote it, once quoted, without its
// secrets: not URL-encoded.
func TestBuildpackURLErrorShowsURLAsWritten(t *testing.T) {
	for in, want := range map[string]string{
		"http://git.example.com/my pack.git":        `"http://git.example.com/my pack.git": scheme http is not allowed`,
		"http://tok@git.example.com/ünï.git?sig=s3": `"http://git.example.com/ünï.git?...": scheme http is not allowed`,
		"git@git.example.com:org/pack.git":          `"git@git.example.com:org/pack.git": not a URL`,
	} {
		_, err := parseBuildpackRef(in)
		if !errors.Is(err, ErrBuildpackURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("parseBuildpackRef(%q) = %v, want it to contain %s", in, err, want)
		}
	}
}

func FuzzParseBuildpacksFile(f *testing.F) {
	for _, seed := range []string{
		"# build steps\n\ngantry/static\r\n  https://git.example.com/pack.git#main  \n",
		"https://token@git.example.com/org/pack#release/2\ngantry/go\n",
		"git@example.com:org/pack.git\n",
		"https://example.com/pack.git#--upload-pack=evil\n",
		"file:///srv/pack\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := parseBuildpacksFile(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), ".buildpacks") {
				t.Fatalf("error %q does not name .buildpacks", err)
			}
			return
		}
		if len(refs) == 0 {
			t.Fatal("no buildpacks and no error")
		}
		for _, r := range refs {
			switch {
			case r.builtin != "":
				if newBuiltin(r.builtin) == nil {
					t.Fatalf("unknown built-in %q accepted", r.builtin)
				}
			case !strings.HasPrefix(r.repo, "https://"):
				t.Fatalf("repository %q is not https", r.repo)
			case strings.HasPrefix(r.ref, "-") || strings.Contains(r.ref, ".."):
				t.Fatalf("ref %q accepted", r.ref)
			}
		}
	})
}
