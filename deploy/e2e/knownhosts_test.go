package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFirstPushTrustsThePlatform starts from a home directory without
// ~/.ssh, as a new user's: `gantry create` pins the platform's SSH host
// key, so that git over ssh with strict host key checking works at once.
func TestFirstPushTrustsThePlatform(t *testing.T) {
	p := newPlatform(t)
	if _, err := os.Stat(filepath.Join(p.home, ".ssh")); !os.IsNotExist(err) {
		t.Fatalf("the test home has a ~/.ssh already (%v)", err)
	}
	repo := t.TempDir()
	gitRun(t, repo, "init", "-q", "-b", "main")
	r := p.run(repo, nil, "create", "pinned")
	if r.code != 0 || !strings.Contains(r.stdout, "Added the platform's SSH host key") {
		t.Fatalf("create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	known := filepath.Join(p.home, ".ssh", "known_hosts")
	b, err := os.ReadFile(known)
	if err != nil || !strings.Contains(string(b), "[127.0.0.1]:"+port(t, "ssh://"+p.sshAddr)+" ssh-ed25519 ") {
		t.Fatalf("known_hosts after create: %v\n%s", err, b)
	}
	// The key is pinned once, whatever registers it again.
	key := filepath.Join(t.TempDir(), "id_ed25519")
	sshKeygen(t, key)
	p.ok("key", "add", key+".pub")
	if again, _ := os.ReadFile(known); string(again) != string(b) {
		t.Errorf("key add changed known_hosts:\n%s\nwas:\n%s", again, b)
	}

	// ssh refuses any host it does not know (StrictHostKeyChecking=yes):
	// the pinned key is what lets git in.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "ls-remote", "gantry")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "HOME="+p.home, "GIT_SSH_COMMAND=ssh -i "+key+
		" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+known)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git ls-remote with strict host key checking: %v\n%s", err, out)
	}
}
