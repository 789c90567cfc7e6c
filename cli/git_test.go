package cli

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestAppFromGitURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		want    string
		wantErr bool
	}{
		{url: "ssh://git@127.0.0.1:2222/demo.git", want: "demo"},
		{url: "ssh://git@gantry.internal/my-app-2.git", want: "my-app-2"},
		{url: "ssh://git@[::1]:2222/demo.git", want: "demo"},
		{url: "ssh://git@127.0.0.1:2222/demo", want: "demo"},
		{url: "https://git.gantry.internal/demo.git", want: "demo"},
		{url: "git@127.0.0.1:demo.git", want: "demo"},
		{url: "gantry.internal:demo", want: "demo"},
		{url: "ssh://git@127.0.0.1:2222/", wantErr: true},
		{url: "ssh://git@127.0.0.1:2222/org/demo.git", wantErr: true},
		{url: "ssh://git@127.0.0.1:2222/Demo.git", wantErr: true},
		{url: "ssh://git@127.0.0.1:2222/demo-.git", wantErr: true},
		{url: "ssh://git@127.0.0.1:2222/d.git", wantErr: true},
		{url: "ssh:///demo.git", wantErr: true},
		{url: "/srv/git/demo.git", wantErr: true},
		{url: "./demo.git", wantErr: true},
		{url: "../x:demo.git", wantErr: true},
		{url: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			got, err := appFromGitURL(tt.url)
			if (err != nil) != tt.wantErr {
				t.Fatalf("appFromGitURL(%q) = %q, %v; want error %v", tt.url, got, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("appFromGitURL(%q) = %q, want %q", tt.url, got, tt.want)
			}
		})
	}
}

func FuzzAppFromGitURL(f *testing.F) {
	for _, s := range []string{
		"ssh://git@127.0.0.1:2222/demo.git", "git@host:demo.git", "https://h/demo",
		"ssh://git@h/a/b.git", "", ":", "ssh://", "%zz", "demo",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := appFromGitURL(raw)
		if err != nil {
			if name != "" {
				t.Fatalf("appFromGitURL(%q) returned %q with error %v", raw, name, err)
			}
			return
		}
		if verr := types.ValidateAppName(name); verr != nil {
			t.Fatalf("appFromGitURL(%q) = %q, not a valid app name: %v", raw, name, verr)
		}
		if !strings.Contains(raw, name) {
			t.Fatalf("appFromGitURL(%q) = %q, which the URL does not contain", raw, name)
		}
		// The URL the controller hands out for that app resolves back to it.
		back, err := appFromGitURL("ssh://git@127.0.0.1:2222/" + name + ".git")
		if err != nil || back != name {
			t.Fatalf("round trip of %q: %q, %v", name, back, err)
		}
	})
}

// gitRepo creates a git repository in a new temporary directory, with the
// given remotes (name to URL), and returns its path.
func gitRepo(t *testing.T, remotes map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "--quiet")
	for name, u := range remotes {
		git(t, dir, "remote", "add", name, u)
	}
	return dir
}

// git runs the real git binary in dir and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(t.Context(), dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestResolveApp(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("these tests need the git binary:", err)
	}
	withRemote := gitRepo(t, map[string]string{"gantry": "ssh://git@127.0.0.1:2222/from-remote.git", "origin": "ssh://git@code.internal/other.git"})
	withoutRemote := gitRepo(t, map[string]string{"origin": "ssh://git@code.internal/other.git"})
	badRemote := gitRepo(t, map[string]string{"gantry": "/srv/git/somewhere"})
	subdir := filepath.Join(withRemote, "sub", "dir")
	writeFile(t, filepath.Join(subdir, "f"), "x")
	notRepo := t.TempDir()

	tests := []struct {
		name    string
		flag    string
		env     map[string]string
		dir     string
		want    string
		wantErr error
	}{
		{name: "flag beats everything", flag: "from-flag", env: map[string]string{"GANTRY_APP": "from-env"}, dir: withRemote, want: "from-flag"},
		{name: "GANTRY_APP beats the remote", env: map[string]string{"GANTRY_APP": "from-env"}, dir: withRemote, want: "from-env"},
		{name: "gantry remote", dir: withRemote, want: "from-remote"},
		{name: "gantry remote from a subdirectory", dir: subdir, want: "from-remote"},
		{name: "repo without a gantry remote", dir: withoutRemote, wantErr: ErrNoApp},
		{name: "not a repo", dir: notRepo, wantErr: ErrNoApp},
		{name: "gantry remote that names no app", dir: badRemote, wantErr: errAny},
		{name: "flag outside a repo", flag: "from-flag", dir: notRepo, want: "from-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := resolveApp(t.Context(), tt.flag, mapEnv(tt.env), tt.dir)
			switch {
			case tt.wantErr == errAny:
				if err == nil || errors.Is(err, ErrNoApp) {
					t.Fatalf("got %q, %v; want an error other than ErrNoApp", got, err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %q, %v; want %v", got, err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got != tt.want:
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
