package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/acme/acmetest"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestPlatformContainers runs `gantryd up --detach` on a new
// data dir: etcd, PostgreSQL and the host agent run as containers, and the
// five system apps' jobs too, shown by the CLI (with no web URL for
// them); an image app answers through the router, with its CPU and memory
// in gantry ps and its requests in the access log in the data dir; a git
// push with the real git and OpenSSH clients builds an app that then
// serves through the router; after a simulated reboot (every container of the
// platform and of the apps killed, `gantryd up --detach`
// again) both apps serve again within 60 s with their releases, config,
// routes and the push keys;
// the reserved prefix is refused; `gantryd down` leaves no platform
// container running and the app's running. Last, `gantryd up`
// in the foreground follows the platform's output and stops
// it on SIGTERM, the app still running.
func TestPlatformContainers(t *testing.T) {
	// Every disk of this machine is past 1%: the controller warns.
	p, docker, cluster := containersPlatform(t, testenv.FreeAddr(t), "--disk-warning-percent", "1")
	for _, bin := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required: %v", bin, err)
		}
	}
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	data, accessLog := p.data, filepath.Join(p.data, "access.log")

	// Every component in a container of its own.
	want := []string{"agent", "etcd", "gantry-controller", "gantry-gitreceiver", "gantry-logaggregator", "gantry-router", "gantry-scheduler", "postgres"}
	eventually(t, time.Minute, "the platform's containers running", func() bool {
		return slices.Equal(runningComponents(t, docker, cluster), want)
	})
	all := p.ok("apps", "--all")
	for _, app := range []string{"gantry-controller", "gantry-gitreceiver", "gantry-logaggregator", "gantry-router", "gantry-scheduler"} {
		if !regexp.MustCompile(`(?m)^` + app + ` +v1 +- `).MatchString(all) {
			t.Errorf("gantry apps --all does not list %s at v1 with no web URL:\n%s", app, all)
		}
	}
	if out := p.ok("apps"); strings.Contains(out, "gantry-") {
		t.Errorf("gantry apps lists the system apps:\n%s", out)
	}
	eventually(t, time.Minute, "gantry -a gantry-router ps to show its job up", func() bool {
		res := p.run("", nil, "-a", "gantry-router", "ps")
		return res.code == 0 && strings.Contains(res.stdout, "router.1") && strings.Contains(res.stdout, "up")
	})
	if out := p.ok("-a", "gantry-router", "releases"); !strings.Contains(out, "v1") || !strings.Contains(out, "gantryd up") {
		t.Errorf("gantry -a gantry-router releases:\n%s", out)
	}
	eventually(t, time.Minute, "the router job's output in gantry -a gantry-router log", func() bool {
		res := p.run("", nil, "-a", "gantry-router", "log")
		return res.code == 0 && strings.Contains(res.stdout, "router.1")
	})

	// The controller's disk warning, in the log of its system app.
	eventually(t, time.Minute, "the disk warning in gantry -a gantry-controller log", func() bool {
		res := p.run("", nil, "-a", "gantry-controller", "log", "-n", "1000")
		return res.code == 0 && len(diskWarnings(res.stdout)) > 0
	})
	if out := p.ok("hosts"); !strings.Contains(out, "past 1%: make room (gantry gc)") {
		t.Errorf("gantry hosts does not flag the disks past the controller's 1%%:\n%s", out)
	}

	// An image app, served through the router's job.
	p.ok("create", "web1")
	p.ok("env", "set", "-a", "web1", "GREETING=kept")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=1")
	serves := func() bool {
		code, _, err := p.get("web1.localhost", "/")
		return err == nil && code == http.StatusOK
	}
	eventually(t, 2*time.Minute, "web1 answers 200 through the router", serves)

	// The agent's container reads the job's cgroups: gantry ps shows its
	// CPU and memory.
	eventually(t, time.Minute, "web1's CPU and memory in gantry ps --json", func() bool {
		var jobs []types.Job
		err := json.Unmarshal([]byte(p.ok("ps", "-a", "web1", "--json")), &jobs)
		return err == nil && len(jobs) == 1 && jobs[0].Usage != nil && jobs[0].Usage.MemoryRSS > 0 && jobs[0].Usage.MemoryLimit > 0
	})
	if out := p.ok("ps", "-a", "web1"); !regexp.MustCompile(`(?m)^web\.1 .* v1 +\d+% +[\d.]+ (B|KiB|MiB) / [\d.]+ (MiB|GiB)$`).MatchString(out) {
		t.Errorf("gantry ps does not show CPU and MEM:\n%s", out)
	}
	// The router's job writes the access log into the data dir.
	eventually(t, 30*time.Second, "web1's requests in the access log", func() bool {
		b, err := os.ReadFile(accessLog)
		return err == nil && strings.Contains(string(b), "app=web1 ")
	})

	// git push, with the real git and OpenSSH clients: the git receiver's
	// job runs git, the build job runs on the builder image, the slug
	// release serves through the router.
	pushApp(t, p)

	releases := p.ok("releases", "-a", "web1", "--json")

	// Many collections later, still one warning per disk.
	warnings := diskWarnings(p.ok("-a", "gantry-controller", "log", "-n", "1000"))
	if len(warnings) == 0 || len(slices.Compact(slices.Sorted(slices.Values(warnings)))) != len(warnings) {
		t.Errorf("disk warnings in gantry -a gantry-controller log, want one per disk: %q", warnings)
	}

	// A simulated reboot: every container of the platform and of the
	// apps dies (docker kill: no restart policy applies), then gantryd up
	// again. Both apps serve again within 60 s, with their releases,
	// config, routes and the push keys.
	p.ok("route", "add", "-a", "web1", "www.reboot.test")
	routes, keys := p.ok("route", "list", "-a", "web1"), p.ok("key", "list")
	siteServes := func() bool {
		code, body, err := p.get("site.localhost", "/")
		return err == nil && code == http.StatusOK && strings.Contains(body, "Hello from a static site")
	}
	routeServes := func() bool {
		code, _, err := p.get("www.reboot.test", "/")
		return err == nil && code == http.StatusOK
	}
	eventually(t, time.Minute, "web1 at its custom domain", routeServes)
	killCluster(t, docker, cluster)
	rebooted := time.Now()
	gantrydRun(t, p, p.args...)
	eventually(t, 60*time.Second-time.Since(rebooted), "web1 serving again within 60 s of the reboot", serves)
	eventually(t, 60*time.Second-time.Since(rebooted), "the pushed site serving again within 60 s of the reboot", siteServes)
	eventually(t, 60*time.Second-time.Since(rebooted), "web1's custom domain serving again within 60 s of the reboot", routeServes)
	if out := p.ok("releases", "-a", "web1", "--json"); out != releases {
		t.Errorf("releases after the reboot:\n%s\nwant:\n%s", out, releases)
	}
	if out := p.ok("env", "-a", "web1"); !strings.Contains(out, "GREETING=kept") {
		t.Errorf("config after the reboot:\n%s", out)
	}
	if out := p.ok("route", "list", "-a", "web1"); out != routes {
		t.Errorf("routes after the reboot:\n%s\nwant:\n%s", out, routes)
	}
	if out := p.ok("key", "list"); out != keys {
		t.Errorf("keys after the reboot:\n%s\nwant:\n%s", out, keys)
	}

	// The reserved prefix.
	if res := p.run("", nil, "create", "gantry-x"); res.code == 0 || !strings.Contains(res.stderr, "reserved") {
		t.Errorf("gantry create gantry-x: exit %d, %s", res.code, res.stderr)
	}
	if code := apiStatus(t, p, http.MethodPost, "/v1/apps", `{"name": "gantry-x"}`); code != http.StatusUnprocessableEntity {
		t.Errorf("POST /v1/apps gantry-x: %d, want 422", code)
	}
	if code := apiStatus(t, p, http.MethodDelete, "/v1/apps/gantry-router", ""); code != http.StatusForbidden {
		t.Errorf("DELETE /v1/apps/gantry-router: %d, want 403", code)
	}

	// gantryd down: no platform container runs; the app's does.
	gantrydRun(t, p, "down", "--data", data)
	if got := runningComponents(t, docker, cluster); len(got) != 0 {
		t.Errorf("platform containers running after gantryd down: %v", got)
	}
	apps := listContainers(t, docker, false, keyspace.LabelCluster+"="+cluster, keyspace.LabelApp+"=web1")
	if len(apps) != 1 {
		t.Errorf("%d running containers of web1 after gantryd down, want 1", len(apps))
	}

	// In the foreground: up follows the platform's output until SIGTERM,
	// then stops the platform and leaves the app running.
	fg := &syncWriter{buf: &bytes.Buffer{}}
	cmd := exec.Command(p.gantryd, slices.DeleteFunc(slices.Clone(p.args), func(a string) bool { return a == "--detach" })...)
	cmd.Env = append(os.Environ(), "HOME="+p.home)
	cmd.Stdout, cmd.Stderr = fg, fg
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
		p.logs.Write([]byte(fg.String()))
	})
	eventually(t, 2*time.Minute, "the foreground platform up and web1 serving", func() bool {
		return strings.Contains(fg.String(), "Gantry is up") && serves()
	})
	eventually(t, time.Minute, "the controller's output followed", func() bool {
		return strings.Contains(fg.String(), "gantry-controller | ")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("gantryd up exited with %v after SIGTERM", err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("gantryd up did not stop within 3 minutes of SIGTERM")
	}
	if got := runningComponents(t, docker, cluster); len(got) != 0 {
		t.Errorf("platform containers running after SIGTERM: %v", got)
	}
	if apps := listContainers(t, docker, false, keyspace.LabelCluster+"="+cluster, keyspace.LabelApp+"=web1"); len(apps) != 1 {
		t.Errorf("%d running containers of web1 after SIGTERM, want 1", len(apps))
	}
}

// diskWarnings returns, from the output of gantry log, the host and disk
// of each of the controller's disk warnings, e.g. "host-1: /data".
func diskWarnings(log string) []string {
	var out []string
	for line := range strings.SplitSeq(log, "\n") {
		_, msg, ok := strings.Cut(line, " gantry: disk almost full on host ")
		if !ok || !strings.Contains(msg, "past the 1% warning: run `gantry gc`") {
			continue
		}
		where, _, _ := strings.Cut(msg, " is ")
		out = append(out, where)
	}
	return out
}

// containersPlatform runs `gantryd up --detach` on a new data
// dir, with the router's HTTP listener on httpAddr, free loopback ports
// for the rest, the router's access log in <data>/access.log and
// extraArgs, and returns it with the Docker client and the cluster's ID.
// The cluster's containers are removed when the test ends.
func containersPlatform(t *testing.T, httpAddr string, extraArgs ...string) (*platform, *dockerclient.Client, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs Docker, PostgreSQL and the binaries")
	}
	gantryd, gantry := buildBinaries(t)
	docker := testenv.Docker(t)
	requireStackImages(t)
	data := t.TempDir()
	a := freeAddrs(t, 8, httpAddr)
	api, sshAddr, httpsAddr := a[0], a[1], a[2]
	p := &platform{t: t, gantryd: gantryd, gantry: gantry, home: t.TempDir(), data: data, sshAddr: sshAddr, httpsAddr: httpsAddr,
		apiURL: "http://" + api, httpURL: "http://" + httpAddr, logs: &syncWriter{buf: &bytes.Buffer{}}}
	p.args = append([]string{"up", "--detach", "--data", data,
		"--api-addr", api, "--http-addr", httpAddr, "--https-addr", httpsAddr, "--ssh-addr", sshAddr,
		"--host-api-addr", a[3], "--log-addr", a[4], "--postgres-addr", a[5],
		"--etcd-client-addr", a[6], "--etcd-peer-addr", a[7],
		"--access-log", filepath.Join(data, "access.log")}, extraArgs...)
	t.Cleanup(func() { cleanupPlatform(t, docker, p) })

	gantrydRun(t, p, p.args...)
	p.token = adminToken(t, data)
	return p, docker, readID(t, filepath.Join(data, node.ClusterIDFile))
}

// freeAddrs returns n free loopback addresses, all different and none in
// taken: the listeners are held until all are picked, so the kernel
// cannot hand out one port twice, as separate testenv.FreeAddr calls can.
func freeAddrs(t *testing.T, n int, taken ...string) []string {
	t.Helper()
	var addrs []string
	for len(addrs) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		defer l.Close()
		if a := l.Addr().String(); !slices.Contains(taken, a) {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// gantrydRun runs gantryd with args and fails the test unless it exits 0
// within 5 minutes.
func gantrydRun(t *testing.T, p *platform, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.gantryd, args...)
	cmd.Env = append(os.Environ(), "HOME="+p.home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	p.logs.Write(out.Bytes())
	if err != nil {
		t.Fatalf("gantryd %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// readID reads an identity file of the data dir.
func readID(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// listContainers lists the containers with all the labels, running ones
// only unless all.
func listContainers(t *testing.T, docker *dockerclient.Client, all bool, labels ...string) []container.Summary {
	t.Helper()
	f := filters.NewArgs()
	for _, l := range labels {
		f.Add("label", l)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	list, err := docker.ContainerList(ctx, container.ListOptions{All: all, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// runningComponents returns the sorted gantry.system labels of the
// cluster's running containers.
func runningComponents(t *testing.T, docker *dockerclient.Client, cluster string) []string {
	t.Helper()
	var out []string
	for _, c := range listContainers(t, docker, false, keyspace.LabelSystem, keyspace.LabelCluster+"="+cluster) {
		out = append(out, c.Labels[keyspace.LabelSystem])
	}
	slices.Sort(out)
	return out
}

// killCluster kills every running container of the cluster, the host
// agent first (as in a machine's crash, no job's exit is then reported),
// and waits until none runs.
func killCluster(t *testing.T, docker *dockerclient.Client, cluster string) {
	t.Helper()
	kill := func(labels ...string) {
		for _, c := range listContainers(t, docker, false, append(labels, keyspace.LabelCluster+"="+cluster)...) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			err := docker.ContainerKill(ctx, c.ID, "KILL")
			cancel()
			if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
				t.Fatalf("kill %s: %v", c.Names, err)
			}
		}
	}
	kill(keyspace.LabelSystem + "=agent")
	eventually(t, time.Minute, "every container of the cluster stopped", func() bool {
		kill()
		return len(listContainers(t, docker, false, keyspace.LabelCluster+"="+cluster)) == 0
	})
}

// apiStatus sends one request with the admin token and returns the status.
func apiStatus(t *testing.T, p *platform, method, path, body string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.apiURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// cleanupPlatform logs the platform containers' output when the test
// failed, then removes every container of the cluster.
func cleanupPlatform(t *testing.T, docker *dockerclient.Client, p *platform) {
	b, err := os.ReadFile(filepath.Join(p.data, node.ClusterIDFile))
	if err != nil {
		return
	}
	cluster := strings.TrimSpace(string(b))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if t.Failed() {
		t.Logf("gantryd output:\n%s", p.logs.String())
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster), filters.Arg("label", keyspace.LabelSystem))})
		for _, c := range list {
			out, err := exec.CommandContext(ctx, "docker", "logs", "--tail", "40", c.ID).CombinedOutput()
			t.Logf("container %s (%s): %v\n%s", c.Names, c.State, err, out)
		}
	}
	// The agent goes first: while it runs, it starts the system apps'
	// jobs again as they are removed. Then the rest, until none is left.
	agents, err := docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster), filters.Arg("label", keyspace.LabelSystem+"=agent"))})
	if err != nil {
		t.Errorf("list the cluster's agent: %v", err)
	}
	for _, c := range agents {
		if err := docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove the agent %s: %v", c.Names, err)
		}
	}
	left := func() int {
		list, err := docker.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster))})
		if err != nil {
			t.Errorf("list the cluster's containers: %v", err)
			return 0
		}
		return len(list)
	}
	eventually(t, time.Minute, "every container of the cluster removed", func() bool {
		if err := testenv.RemoveContainers(ctx, docker, cluster); err != nil {
			t.Logf("remove the cluster's containers: %v", err)
		}
		return left() == 0
	})
}

// pushApp registers a key, creates the app site from a git repository of
// the static test app (gantry create pins the platform's host key), pushes
// it and waits until the router serves it.
func pushApp(t *testing.T, p *platform) {
	t.Helper()
	repo, keyFile := staticSiteRepo(t, p)
	out, err := p.push(repo, keyFile)
	if err != nil {
		t.Fatalf("git push: %v\n%s", err, out)
	}
	wantLines(t, out,
		"remote: -----> Compiled slug size is",
		"remote: -----> Creating release v1",
		"remote: -----> Deployed v1",
		"remote: =====> Application deployed: http://site.localhost:"+port(t, p.httpURL))
	eventually(t, time.Minute, "the router to serve the pushed site", func() bool {
		code, body, err := p.get("site.localhost", "/")
		return err == nil && code == http.StatusOK && strings.Contains(body, "Hello from a static site")
	})
}

// TestPlatformContainersFailedStart starts `gantryd up` with
// PostgreSQL's address taken: the start fails after it started etcd and
// PostgreSQL, says so, and leaves none of the platform's containers
// running.
func TestPlatformContainersFailedStart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Docker and the binaries")
	}
	gantryd, gantry := buildBinaries(t)
	docker := testenv.Docker(t)
	requireStackImages(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	data := t.TempDir()
	p := &platform{t: t, gantryd: gantryd, gantry: gantry, home: t.TempDir(), data: data, logs: &syncWriter{buf: &bytes.Buffer{}}}
	t.Cleanup(func() { cleanupPlatform(t, docker, p) })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	a := freeAddrs(t, 8, taken.Addr().String())
	cmd := exec.CommandContext(ctx, gantryd, "up", "--detach", "--data", data,
		"--api-addr", a[0], "--http-addr", a[1], "--https-addr", a[2],
		"--ssh-addr", a[3], "--host-api-addr", a[4], "--log-addr", a[5],
		"--postgres-addr", taken.Addr().String(),
		"--etcd-client-addr", a[6], "--etcd-peer-addr", a[7])
	cmd.Env = append(os.Environ(), "HOME="+p.home)
	out, err := cmd.CombinedOutput()
	p.logs.Write(out)
	if err == nil {
		t.Fatalf("gantryd up with PostgreSQL's address taken exited 0:\n%s", out)
	}
	if !regexp.MustCompile(`gantryd up failed \(stopped the [1-9]\d* platform containers it had started, kept the 0 running ones it found\)`).Match(out) {
		t.Errorf("gantryd up did not say what it stopped:\n%s", out)
	}
	cluster := readID(t, filepath.Join(data, node.ClusterIDFile))
	if got := runningComponents(t, docker, cluster); len(got) != 0 {
		t.Errorf("platform containers running after a failed start: %v", got)
	}
	if got := listContainers(t, docker, true, keyspace.LabelCluster+"="+cluster, keyspace.LabelSystem+"=etcd"); len(got) != 1 {
		t.Errorf("%d etcd containers after a failed start, want 1 (started, then stopped)", len(got))
	}
}

// TestPlatformContainersACME runs the platform as containers with ACME
// against a real Pebble whose CA is trusted through --acme-ca-file, which
// the controller's container reads from a read-only mount: a custom domain
// of an image app answers over HTTPS with a Pebble-issued certificate.
func TestPlatformContainersACME(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Docker, PostgreSQL, pebble and the binaries")
	}
	httpAddr := testenv.FreeAddr(t)
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	pebble := acmetest.Start(t, httpPort)
	p, docker, _ := containersPlatform(t, httpAddr, "--acme-email", "ops@example.test",
		"--acme-directory", pebble.Directory, "--acme-ca-file", pebble.CAFile)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=1")
	eventually(t, 2*time.Minute, "web1 up", func() bool { return upCount(p.jobs("web1")) == 1 })
	p.ok("route", "add", "-a", "web1", "www.example.test")
	roots := pebble.Roots(t)
	eventually(t, time.Minute, "https://www.example.test/ with a Pebble-issued certificate", func() bool {
		return httpsOK(p.httpsAddr, "www.example.test", roots)
	})
	if out := p.ok("route", "list", "-a", "web1"); !strings.Contains(out, "issued, until") {
		t.Errorf("route list does not show the certificate issued:\n%s", out)
	}
}
