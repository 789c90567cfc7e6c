package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dockerclient "github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/testenv"
)

// binaries holds the gantryd and gantry binaries built once per test run.
var binaries struct {
	once    sync.Once
	dir     string
	gantryd string
	gantry  string
	err     error
}

// buildBinaries builds both binaries, as `make build` does, into a temporary
// directory shared by the package's tests.
func buildBinaries(t *testing.T) (gantryd, gantry string) {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "gantry-e2e-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		root := repoRoot()
		for _, b := range []struct{ out, pkg, cgo string }{
			{filepath.Join(dir, "gantryd"), "./cmd/gantryd", "0"},
			{filepath.Join(dir, "gantry"), "./cmd/gantry", "1"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, "-ldflags", "-X main.version=e2e", b.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
		binaries.gantryd = filepath.Join(dir, "gantryd")
		binaries.gantry = filepath.Join(dir, "gantry")
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.gantryd, binaries.gantry
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// platform is one `gantryd up` process on free ports in a temporary data dir.
type platform struct {
	t         *testing.T
	gantryd   string
	gantry    string
	data      string
	home      string
	args      []string
	apiURL    string
	token     string
	httpURL   string
	httpsAddr string
	sshAddr   string // the git receiver's SSH address

	cmd  *exec.Cmd
	logs *syncWriter
	done chan error
}

func newPlatform(t *testing.T, extraArgs ...string) *platform {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs Docker, PostgreSQL and the binaries")
	}
	gantryd, gantry := buildBinaries(t)
	p := &platform{t: t, gantryd: gantryd, gantry: gantry, home: t.TempDir()}
	t.Cleanup(p.stop)
	// A free port can be taken by another test between its pick and
	// gantryd's bind: then new ports, in a new data dir.
	for attempt := 1; ; attempt++ {
		p.pickAddrs(extraArgs)
		err := p.tryStart()
		if err == nil {
			return p
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("gantryd could not bind a port picked for it, trying other ports: %v", err)
	}
}

// pickAddrs chooses free ports and a new data dir for gantryd up.
func (p *platform) pickAddrs(extraArgs []string) {
	t := p.t
	p.data = t.TempDir()
	api := testenv.FreeAddr(t)
	http := testenv.FreeAddr(t)
	p.httpsAddr = testenv.FreeAddr(t)
	p.sshAddr = testenv.FreeAddr(t)
	p.args = []string{"up", "--in-process",
		"--data", p.data,
		"--api-addr", api,
		"--http-addr", http,
		"--https-addr", p.httpsAddr,
		"--ssh-addr", p.sshAddr,
		"--host-api-addr", testenv.FreeAddr(t),
		"--etcd-client-addr", testenv.FreeAddr(t),
		"--etcd-peer-addr", testenv.FreeAddr(t),
	}
	p.args = append(p.args, extraArgs...)
	p.apiURL = "http://" + api
	p.httpURL = "http://" + http
}

// start runs gantryd up and waits until admin.env exists and the API is
// healthy.
func (p *platform) start() {
	p.t.Helper()
	if err := p.tryStart(); err != nil {
		p.t.Fatal(err)
	}
}

// tryStart is start that returns what went wrong.
func (p *platform) tryStart() error {
	w := &syncWriter{buf: &bytes.Buffer{}}
	p.logs = w
	cmd := exec.Command(p.gantryd, p.args...)
	cmd.Env = append(os.Environ(), "HOME="+p.home)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start gantryd: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	deadline := time.Now().Add(90 * time.Second)
	for !p.healthy() {
		select {
		case err := <-done:
			return fmt.Errorf("gantryd exited while starting: %v\n%s", err, w.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("gantryd not up after 90s:\n%s", w.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.cmd, p.done = cmd, done
	env, err := os.ReadFile(filepath.Join(p.data, "admin.env"))
	if err != nil {
		return fmt.Errorf("admin.env: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "GANTRY_TOKEN="); ok {
			p.token = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "GANTRY_URL="); ok && v != p.apiURL {
			return fmt.Errorf("admin.env GANTRY_URL=%s, want %s", v, p.apiURL)
		}
	}
	if p.token == "" {
		return fmt.Errorf("admin.env has no token:\n%s", env)
	}
	return nil
}

func (p *platform) healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.apiURL+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *platform) terminate() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM gantryd: %v", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Fatalf("gantryd exited with %v after SIGTERM:\n%s", err, p.logs.String())
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		p.t.Fatalf("gantryd did not stop within 60s of SIGTERM:\n%s", p.logs.String())
	}
	p.cmd = nil
}

// stop ends gantryd (if running) and removes the cluster's app containers.
func (p *platform) stop() {
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		p.cmd = nil
	}
	if p.t.Failed() {
		p.t.Logf("gantryd output:\n%s", p.logs.String())
	}
	// App containers outlive gantryd by design; the test removes its
	// cluster's.
	if id, err := os.ReadFile(filepath.Join(p.data, "cluster-id")); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		docker, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
		if err == nil {
			defer docker.Close()
			if err := testenv.RemoveContainers(ctx, docker, strings.TrimSpace(string(id))); err != nil {
				p.t.Errorf("remove the cluster's containers: %v", err)
			}
		}
	}
}

// result is one CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the gantry CLI with the platform's URL and token in the
// environment, in dir ("" = a temp dir), and extra env.
func (p *platform) run(dir string, env []string, args ...string) result {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.gantry, args...)
	if dir == "" {
		dir = p.home
	}
	cmd.Dir = dir
	cmd.Env = append(p.cliEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			p.t.Fatalf("gantry %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// cliEnv is the environment of the CLI: the process's, with the
// platform's URL and token.
func (p *platform) cliEnv() []string {
	return append(os.Environ(),
		"HOME="+p.home,
		"GANTRY_CONFIG="+filepath.Join(p.home, "gantry-config.json"),
		"GANTRY_URL="+p.apiURL,
		"GANTRY_TOKEN="+p.token,
		"GANTRY_APP=",
	)
}

// ok runs the CLI and fails the test unless it exits 0.
func (p *platform) ok(args ...string) string {
	p.t.Helper()
	r := p.run("", nil, args...)
	if r.code != 0 {
		p.t.Fatalf("gantry %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

type syncWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}
