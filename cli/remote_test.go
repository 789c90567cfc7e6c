package cli

import (
	"maps"
	"strings"
	"testing"
)

// remotes returns the remotes of the repository at dir as name -> URL.
func remotes(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, name := range strings.Fields(git(t, dir, "remote")) {
		m[name] = git(t, dir, "remote", "get-url", name)
	}
	return m
}

func TestCreateAddsGitRemote(t *testing.T) {
	const shopURL = "ssh://git@127.0.0.1:2222/shop.git"
	tests := []struct {
		name        string
		args        []string
		repo        bool
		remotes     map[string]string
		wantRemotes map[string]string
		wantOut     string
	}{
		{
			name: "adds gantry", args: []string{"create", "shop"}, repo: true,
			wantRemotes: map[string]string{"gantry": shopURL}, wantOut: "Added git remote gantry\n",
		},
		{
			name: "leaves an existing gantry remote", args: []string{"create", "shop"}, repo: true,
			remotes:     map[string]string{"gantry": "ssh://git@127.0.0.1:2222/old.git"},
			wantRemotes: map[string]string{"gantry": "ssh://git@127.0.0.1:2222/old.git"},
			wantOut:     "Git remote gantry already exists (ssh://git@127.0.0.1:2222/old.git); left unchanged\n",
		},
		{
			name: "--remote picks the name", args: []string{"create", "shop", "--remote", "staging"}, repo: true,
			remotes:     map[string]string{"gantry": "ssh://git@127.0.0.1:2222/old.git"},
			wantRemotes: map[string]string{"gantry": "ssh://git@127.0.0.1:2222/old.git", "staging": shopURL},
			wantOut:     "Added git remote staging\n",
		},
		{
			name: "--no-remote", args: []string{"create", "--no-remote", "shop"}, repo: true,
			wantRemotes: map[string]string{},
		},
		{name: "outside a work tree", args: []string{"create", "shop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestController(t)
			isolate(t, tc.URL)
			dir := t.TempDir()
			if tt.repo {
				dir = gitRepo(t, tt.remotes)
			}
			t.Chdir(dir)
			res := runCLI(t, "", tt.args...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			wantOut := "Created shop\nGit URL: " + shopURL + "\nWeb URL: http://shop.localhost:8080\n" + tt.wantOut
			if res.stdout != wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, wantOut)
			}
			if tt.repo {
				if got := remotes(t, dir); !maps.Equal(got, tt.wantRemotes) {
					t.Errorf("remotes %v, want %v", got, tt.wantRemotes)
				}
			}
		})
	}
}

func TestDestroyRemovesGitRemote(t *testing.T) {
	const demoURL = "ssh://git@127.0.0.1:2222/demo.git"
	tests := []struct {
		name        string
		args        []string
		remotes     map[string]string
		wantRemotes map[string]string
		wantOut     string
	}{
		{
			name: "app from the remote", args: []string{"destroy", "--confirm", "demo"},
			remotes:     map[string]string{"gantry": demoURL, "origin": "ssh://git@code.internal/demo.git"},
			wantRemotes: map[string]string{"origin": "ssh://git@code.internal/demo.git"},
			wantOut:     "Destroyed demo\nRemoved git remote gantry\n",
		},
		{
			name: "remote of another app stays", args: []string{"destroy", "-a", "demo", "--confirm", "demo"},
			remotes:     map[string]string{"gantry": "ssh://git@127.0.0.1:2222/api.git"},
			wantRemotes: map[string]string{"gantry": "ssh://git@127.0.0.1:2222/api.git"},
			wantOut:     "Destroyed demo\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestController(t)
			tc.seed(t)
			isolate(t, tc.URL)
			dir := gitRepo(t, tt.remotes)
			t.Chdir(dir)
			res := runCLI(t, "", tt.args...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			if res.stdout != tt.wantOut {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantOut)
			}
			if got := remotes(t, dir); !maps.Equal(got, tt.wantRemotes) {
				t.Errorf("remotes %v, want %v", got, tt.wantRemotes)
			}
			if res := runCLI(t, "", "info", "-a", "demo"); res.code != 1 {
				t.Errorf("demo still exists after destroy: %s", res.stdout)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	tc := newTestController(t)
	tests := []struct {
		name       string
		url, token string
		wantServer string
	}{
		{name: "reachable", url: tc.URL, token: testToken, wantServer: "Server: 0.1.0 (" + tc.URL + ")\n"},
		{name: "no cluster", wantServer: ""},
		{name: "unreachable", url: closedURL(t), token: testToken, wantServer: "Server: unknown (cannot reach the controller at "},
		{name: "token rejected", url: tc.URL, token: "wrong", wantServer: "Server: unknown (the controller at " + tc.URL + " rejected the token from GANTRY_TOKEN)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t, tt.url)
			t.Setenv("GANTRY_TOKEN", tt.token)
			res := runCLI(t, "", "version")
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			client, server, _ := strings.Cut(res.stdout, "\n")
			if !strings.HasPrefix(client, "Client: dev (go") {
				t.Errorf("client line %q", client)
			}
			if !strings.HasPrefix(server, tt.wantServer) || (tt.wantServer == "" && server != "") {
				t.Errorf("server line %q, want prefix %q", server, tt.wantServer)
			}
		})
	}
}
