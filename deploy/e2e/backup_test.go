package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
)

// TestBackupRestore backs up a running platform under load, loses
// everything (containers and data dir), restores into a new data dir and
// requires every app back: its last release, config, routes with their
// certificates, keys and git repository.
func TestBackupRestore(t *testing.T) {
	p := newPlatform(t)
	requireStackImages(t)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))

	// An image app at web=2 with config and two custom domains, one with
	// its own certificate.
	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=2")
	p.ok("env", "set", "-a", "web1", "GREETING=restored")
	p.ok("route", "add", "-a", "web1", "www.example.test")
	certFile, keyFile, pool := selfSigned(t, "secure.example.test")
	p.ok("route", "add", "-a", "web1", "secure.example.test", "--cert", certFile, "--key", keyFile)

	// A pushed app: its slug lives in the blobstore.
	repo, keyPath := staticSiteRepo(t, p)
	if out, err := p.push(repo, keyPath); err != nil {
		t.Fatalf("git push: %v\n%s", err, out)
	}
	serving := func(what string) {
		t.Helper()
		eventually(t, 2*time.Minute, what+": web1 at its default and custom domains", func() bool {
			for _, host := range []string{"web1.localhost", "www.example.test"} {
				if code, _, err := p.get(host, "/"); err != nil || code != http.StatusOK {
					return false
				}
			}
			return true
		})
		eventually(t, 2*time.Minute, what+": web1 over HTTPS with its certificate", func() bool {
			return httpsOK(p.httpsAddr, "secure.example.test", pool)
		})
		eventually(t, 2*time.Minute, what+": the pushed site", func() bool {
			code, body, err := p.get("site.localhost", "/")
			return err == nil && code == http.StatusOK && strings.Contains(body, "Hello from a static site")
		})
	}
	serving("before the backup")
	before := stateOf(p, "web1", "site")

	// The backup runs while the platform serves.
	archive := filepath.Join(t.TempDir(), "gantry.backup")
	l := startLoad(p.httpURL, "web1.localhost")
	runGantryd(t, p, "backup", "--data", p.data, "--output", archive)
	l.end(t, "requests during the backup", 500)
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v, want mode 0600 (it holds secrets)", err)
	}

	// Everything is lost: gantryd, every container of the cluster, the
	// data dir.
	p.terminate()
	cluster, err := os.ReadFile(filepath.Join(p.data, "cluster-id"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := testenv.RemoveContainers(ctx, docker, strings.TrimSpace(string(cluster))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(p.data); err != nil {
		t.Fatal(err)
	}

	// Refusals first: an existing data dir is never overwritten.
	used := t.TempDir()
	os.WriteFile(filepath.Join(used, "keep"), []byte("x"), 0o600)
	if out, err := gantrydCmd(ctx, p, "restore", archive, "--data", used).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Errorf("restore into a used dir: %v\n%s", err, out)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	out := runGantryd(t, p, "restore", archive, "--data", restored)
	if !strings.Contains(out, "gantryd up --data "+restored) {
		t.Errorf("restore output does not say how to start: %s", out)
	}
	p.useData(restored)
	p.start()
	serving("after the restore")
	if after := stateOf(p, "web1", "site"); after != before {
		t.Errorf("state after the restore:\n%s\nwant:\n%s", after, before)
	}

	// The repository came back: a push of a new commit builds on it.
	if out, err := p.git(repo, keyPath, "ls-remote", "gantry", "main"); err != nil || !strings.Contains(out, strings.TrimSpace(gitRun(t, repo, "rev-parse", "HEAD"))) {
		t.Errorf("ls-remote after the restore: %v\n%s", err, out)
	}
}

// stateOf is what a restore must bring back of apps, as the CLI shows it:
// releases, config, routes and formation, and the SSH keys.
func stateOf(p *platform, apps ...string) string {
	p.t.Helper()
	var b strings.Builder
	for _, app := range apps {
		for _, args := range [][]string{
			{"releases", "-a", app, "--json"},
			{"env", "-a", app},
			{"route", "list", "-a", app, "--json"},
			{"scale", "-a", app},
		} {
			b.WriteString("$ gantry " + strings.Join(args, " ") + "\n" + p.ok(args...))
		}
	}
	b.WriteString("$ gantry key list\n" + p.ok("key", "list"))
	return b.String()
}

func httpsOK(addr, host string, pool *x509.CertPool) bool {
	var d net.Dialer
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get("https://" + host + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// useData points the platform's next start at another data dir.
func (p *platform) useData(dir string) {
	for i, a := range p.args {
		if a == "--data" && i+1 < len(p.args) {
			p.args[i+1] = dir
		}
	}
	p.data = dir
}

func gantrydCmd(ctx context.Context, p *platform, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.gantryd, args...)
	cmd.Env = append(os.Environ(), "HOME="+p.home)
	return cmd
}

// runGantryd runs a gantryd command to its end and fails the test unless
// it succeeds.
func runGantryd(t *testing.T, p *platform, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := gantrydCmd(ctx, p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("gantryd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
