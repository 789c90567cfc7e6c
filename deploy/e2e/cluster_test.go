package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// clusterHost is one host of a test cluster: its own loopback address,
// with the usual ports, and its own data dir, on the one Docker engine.
type clusterHost struct {
	addr, data string
	// id is the host's ID, once its data dir has one.
	id string
	// p is the CLI against this host's API.
	p *platform
}

// testCluster is a cluster of hosts made with gantryd up and gantryd join.
type testCluster struct {
	t       *testing.T
	docker  *dockerclient.Client
	gantryd string
	home    string
	logs    *syncWriter
	hosts   []*clusterHost
	cluster string
}

// newCluster starts a cluster of one host per address: the first with
// gantryd up, the others with gantryd join and a token of the first's.
func newCluster(t *testing.T, addrs ...string) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs Docker and the binaries")
	}
	gantryd, gantry := buildBinaries(t)
	requireStackImages(t)
	c := &testCluster{t: t, docker: testenv.Docker(t), gantryd: gantryd, home: t.TempDir(), logs: &syncWriter{buf: &bytes.Buffer{}}}
	for _, a := range addrs {
		for _, port := range []string{"7070", "8080", "7379"} {
			if l, err := net.Listen("tcp", net.JoinHostPort(a, port)); err != nil {
				t.Fatalf("the cluster's addresses must be free: %v", err)
			} else {
				l.Close()
			}
		}
		h := &clusterHost{addr: a, data: t.TempDir()}
		h.p = &platform{t: t, gantryd: gantryd, gantry: gantry, home: c.home, data: h.data,
			apiURL: "http://" + a + ":7070", httpURL: "http://" + a + ":8080", sshAddr: a + ":2222", logs: c.logs}
		c.hosts = append(c.hosts, h)
	}
	t.Cleanup(c.cleanup)
	first := c.hosts[0]
	c.gantrydOK("up", "--detach", "--advertise", first.addr, "--data", first.data)
	c.cluster = readID(t, filepath.Join(first.data, node.ClusterIDFile))
	token := strings.TrimSpace(c.gantrydOK("join-token", "--data", first.data, "--quiet"))
	for _, h := range c.hosts[1:] {
		c.gantrydOK("join", first.addr+":7070", "--token", token, "--advertise", h.addr, "--data", h.data, "--detach")
	}
	for _, h := range c.hosts {
		h.id = readID(t, filepath.Join(h.data, node.HostIDFile))
		h.p.token = adminToken(t, h.data)
	}
	return c
}

// adminToken reads the CLI's token from the data dir's admin.env.
func adminToken(t *testing.T, data string) string {
	t.Helper()
	_, token, err := node.ReadAdminEnv(data)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// gantryd runs gantryd with args for at most 5 minutes and returns its
// output and error.
func (c *testCluster) daemon(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(c.t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.gantryd, args...)
	cmd.Env = append(os.Environ(), "HOME="+c.home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	fmt.Fprintf(c.logs, "$ gantryd %s\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	if err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("gantryd %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

func (c *testCluster) gantrydOK(args ...string) string {
	c.t.Helper()
	out, err := c.daemon(args...)
	if err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// up runs gantryd up --detach --data DIR on each of hosts at once, as
// their boot would (each comes back at the address it was started with),
// and returns when the last one returned.
func (c *testCluster) up(hosts ...*clusterHost) {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	outs := make([]string, len(hosts))
	for i, h := range hosts {
		wg.Go(func() { outs[i], errs[i] = c.daemon("up", "--detach", "--data", h.data) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.t.Fatalf("%v\n%s", err, outs[i])
		}
	}
}

// containers lists the cluster's containers that match the label filters
// kv ("key=value"), running ones only unless all.
func (c *testCluster) containers(all bool, kv ...string) []container.Summary {
	c.t.Helper()
	// Not the test's context: the cleanup lists too.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+c.cluster))
	for _, v := range kv {
		f.Add("label", v)
	}
	list, err := c.docker.ContainerList(ctx, container.ListOptions{All: all, Filters: f})
	if err != nil {
		c.t.Fatalf("list containers: %v", err)
	}
	return list
}

// lose loses hosts: every container of theirs, the platform's and the
// apps', is killed at once and stays down (stopped with no grace, so that
// no restart policy brings it back), as when the machine dies.
func (c *testCluster) lose(hosts ...*clusterHost) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range hosts {
		for _, ctr := range c.containers(false, keyspace.LabelHost+"="+h.id) {
			wg.Go(func() {
				zero := 0
				if err := c.docker.ContainerStop(ctx, ctr.ID, container.StopOptions{Timeout: &zero}); err != nil {
					c.t.Errorf("kill %s: %v", ctr.Names, err)
				}
			})
		}
	}
	wg.Wait()
}

// hostView is the part of gantry hosts --json the tests read.
type hostView struct {
	ID         string `json:"id"`
	Addr       string `json:"addr"`
	State      string `json:"state"`
	EtcdMember bool   `json:"etcd_member"`
}

func (c *testCluster) hostStates(p *platform) map[string]hostView {
	c.t.Helper()
	r := p.run("", nil, "hosts", "--json")
	if r.code != 0 {
		return nil
	}
	var list []hostView
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		c.t.Fatalf("gantry hosts --json: %v\n%s", err, r.stdout)
	}
	out := map[string]hostView{}
	for _, h := range list {
		out[h.ID] = h
	}
	return out
}

// webJobs returns the app's up jobs of release version (0: any) per host
// ID, or nil when gantry ps fails.
func webJobs(p *platform, app string, version int) map[string]int {
	r := p.run("", nil, "-a", app, "ps", "--json")
	if r.code != 0 {
		return nil
	}
	var jobs []struct {
		State   string `json:"state"`
		Host    string `json:"host"`
		Release int    `json:"release"`
	}
	if json.Unmarshal([]byte(r.stdout), &jobs) != nil {
		return nil
	}
	out := map[string]int{}
	for _, j := range jobs {
		if j.State == "up" && (version == 0 || j.Release == version) {
			out[j.Host]++
		}
	}
	return out
}

// instances returns the distinct answers of n requests through the
// router at routerURL for host.
func instances(routerURL, host string, n int) (map[string]bool, error) {
	seen := map[string]bool{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range n {
		req, _ := http.NewRequest(http.MethodGet, routerURL+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return seen, err
		}
		var body bytes.Buffer
		_, err = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return seen, fmt.Errorf("%s: %s %v", routerURL, resp.Status, err)
		}
		seen[strings.TrimSpace(body.String())] = true
	}
	return seen, nil
}

// serves reports whether every host's router serves app.
func (c *testCluster) serves(app string, hosts ...*clusterHost) bool {
	for _, h := range hosts {
		if _, err := instances(h.p.httpURL, app+".localhost", 3); err != nil {
			return false
		}
	}
	return true
}

func (c *testCluster) cleanup() {
	t := c.t
	if t.Failed() {
		t.Logf("gantryd output:\n%s", c.logs.String())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ctr := range c.containers(true, keyspace.LabelSystem) {
			out, err := exec.CommandContext(ctx, "docker", "logs", "--tail", "30", ctr.ID).CombinedOutput()
			t.Logf("container %s (%s): %v\n%s", ctr.Names, ctr.State, err, out)
		}
	}
	if c.cluster == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The agents first: while one runs, it starts its jobs again.
	for _, ctr := range c.containers(true, keyspace.LabelSystem+"=agent") {
		_ = c.docker.ContainerRemove(ctx, ctr.ID, container.RemoveOptions{Force: true})
	}
	eventually(t, time.Minute, "every container of the cluster removed", func() bool {
		if err := testenv.RemoveContainers(ctx, c.docker, c.cluster); err != nil {
			t.Logf("remove the cluster's containers: %v", err)
		}
		return len(c.containers(true)) == 0
	})
}

// TestCluster runs three hosts on one machine, each its own gantryd up
// or gantryd join on its own loopback address and data dir: the hosts
// and their etcd members, an app spread over them and served by every
// host's router, the loss of a host under load, its return, the etcd
// quorum, and reboots of the whole cluster.
func TestCluster(t *testing.T) {
	c := newCluster(t, "127.0.0.12", "127.0.0.13", "127.0.0.14")
	h1, h2, h3 := c.hosts[0], c.hosts[1], c.hosts[2]
	p := h1.p
	image := testenv.BuildTestImage(t, c.docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))

	// Spread: three hosts up, three etcd members, two web jobs on each.
	eventually(t, time.Minute, "gantry hosts to show 3 hosts up, 3 etcd members", func() bool {
		hosts := c.hostStates(p)
		up, members := 0, 0
		for _, h := range hosts {
			if h.State == "up" {
				up++
			}
			if h.EtcdMember {
				members++
			}
		}
		return len(hosts) == 3 && up == 3 && members == 3
	})
	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=6")
	eventually(t, time.Minute, "two web jobs up on each host", func() bool {
		jobs := webJobs(p, "web1", 0)
		return jobs[h1.id] == 2 && jobs[h2.id] == 2 && jobs[h3.id] == 2
	})
	for _, h := range c.hosts {
		eventually(t, 30*time.Second, "the router of "+h.addr+" to reach all 6 instances", func() bool {
			seen, err := instances(h.p.httpURL, "web1.localhost", 40)
			return err == nil && len(seen) == 6
		})
	}

	// The CLI works against any host's API.
	for _, h := range c.hosts {
		if out := h.p.ok("apps"); !strings.Contains(out, "web1") {
			t.Errorf("gantry apps against %s:\n%s", h.p.apiURL, out)
		}
	}

	// Builds across hosts: a git push through host 2 builds and deploys;
	// the next push uses the build cache, on the host its build runs on.
	repo, key := goWebRepo(t, h2.p, "hello")
	if remote := gitRun(t, repo, "remote", "get-url", "gantry"); !strings.Contains(remote, h2.addr+":2222") {
		t.Errorf("gantry create through host 2 set the remote %q; want host 2's git receiver", remote)
	}
	out, err := h2.p.push(repo, key)
	if err != nil {
		t.Fatalf("git push through host 2: %v\n%s", err, out)
	}
	wantLines(t, out, "remote: -----> No build cache yet", "remote: -----> Deployed v1")
	eventually(t, time.Minute, "hello served through every host's router", func() bool { return c.serves("hello", c.hosts...) })
	if err := os.WriteFile(filepath.Join(repo, "CHANGES"), []byte("second push\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "second")
	if out, err = h2.p.push(repo, key); err != nil {
		t.Fatalf("second git push: %v\n%s", err, out)
	}
	wantLines(t, out, "remote: -----> Using the build cache kept on this host", "remote: -----> Deployed v2")
	h2.p.ok("scale", "-a", "hello", "web=3") // one on each host: it outlives the loss of any

	// Security: etcd refuses a client without a certificate of the
	// cluster; a join with a wrong or an expired token is refused.
	checkEtcdRefuses(t, h1.addr+":7379")
	// A token of the right form and CA whose secret is not the cluster's.
	valid := strings.TrimSpace(c.gantrydOK("join-token", "--data", h1.data, "-q"))
	i := len("gantryjoin1.")
	flip := map[byte]string{'0': "1"}[valid[i]]
	if flip == "" {
		flip = "0"
	}
	wrong := valid[:i] + flip + valid[i+1:]
	for _, tc := range []struct {
		name, token, want string
		wait              time.Duration
	}{
		{"wrong", wrong, "not one of this cluster's", 0},
		{"expired", strings.TrimSpace(c.gantrydOK("join-token", "--data", h1.data, "-q", "--ttl", "1s")), "expired at", 2 * time.Second},
	} {
		time.Sleep(tc.wait)
		data := t.TempDir()
		out, err := c.daemon("join", h1.addr+":7070", "--token", tc.token, "--advertise", "127.0.0.15", "--data", data, "--detach")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("join with a %s token: %v, output %q; want a refusal saying %q", tc.name, err, out, tc.want)
		}
		if _, err := os.Stat(filepath.Join(data, node.ClusterIDFile)); err == nil {
			t.Errorf("join with a %s token wrote the data dir", tc.name)
		}
	}

	// A join over plain HTTP is refused: the secret goes over TLS only.
	req, _ := http.NewRequest(http.MethodPost, h1.p.apiURL+"/cluster/join", strings.NewReader(`{"addr":"127.0.0.15"}`))
	req.Header.Set("Authorization", "Bearer "+valid[i:i+32])
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("join over plain HTTP: %v", err)
	} else {
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "over TLS only") {
			t.Errorf("join over plain HTTP: %s %s; want 400 over TLS only", resp.Status, body.String())
		}
	}

	// Host loss under load: host 3 goes; its jobs move to hosts 1 and 2
	// within 30 s, no GET through host 1's router fails, and a deploy
	// works on the two that remain.
	l := startLoad(h1.p.httpURL+"/", "web1.localhost")
	time.Sleep(2 * time.Second)
	lost := time.Now()
	c.lose(h3)
	eventually(t, 30*time.Second, "6 web jobs up on hosts 1 and 2", func() bool {
		jobs := webJobs(p, "web1", 0)
		return jobs[h1.id]+jobs[h2.id] == 6
	})
	t.Logf("the lost host's jobs were up elsewhere %s after the loss", time.Since(lost).Round(100*time.Millisecond))
	p.ok("env", "set", "-a", "web1", "AFTER_LOSS=1")
	eventually(t, 2*time.Minute, "release v2 at 6 jobs on hosts 1 and 2", func() bool {
		jobs := webJobs(p, "web1", 2)
		return jobs[h1.id]+jobs[h2.id] == 6 && p.settled("web1", 2, 6)
	})
	l.end(t, "GETs through host 1's router while host 3 was lost", 2000)

	// Return: host 3 comes back, rejoins, runs no duplicate, and the
	// count stays exact.
	c.up(h3)
	eventually(t, time.Minute, "host 3 up again", func() bool { return c.hostStates(p)[h3.id].State == "up" })
	for range 10 {
		if jobs := webJobs(p, "web1", 0); jobs[h1.id]+jobs[h2.id]+jobs[h3.id] > 6 {
			t.Fatalf("after host 3 returned, %v web jobs up; want 6", jobs)
		}
		if n := len(c.containers(false, keyspace.LabelApp+"=web1")); n > 6+1 {
			t.Fatalf("after host 3 returned, %d containers of web1 run; want 6 (7 during a move)", n)
		}
		time.Sleep(500 * time.Millisecond)
	}
	eventually(t, time.Minute, "6 web jobs and 6 containers of web1", func() bool {
		jobs := webJobs(p, "web1", 2)
		return jobs[h1.id]+jobs[h2.id]+jobs[h3.id] == 6 && len(c.containers(false, keyspace.LabelApp+"=web1")) == 6
	})

	// etcd's quorum: with two of three members down, the routers serve
	// from their tables and a deploy fails with a clear error; once they
	// are back, the cluster converges.
	var stopped []string
	for _, h := range []*clusterHost{h2, h3} {
		etcd := c.containers(false, keyspace.LabelHost+"="+h.id, keyspace.LabelSystem+"=etcd")
		if len(etcd) != 1 {
			t.Fatalf("host %s runs %d etcd containers, want 1", h.id, len(etcd))
		}
		id := etcd[0].ID
		stopped = append(stopped, id)
		zero := 0
		if err := c.docker.ContainerStop(t.Context(), id, container.StopOptions{Timeout: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if !c.serves("web1", c.hosts...) {
			t.Fatal("with two etcd members down, a router stopped serving web1")
		}
		time.Sleep(time.Second)
	}
	if r := p.run("", nil, "env", "set", "-a", "web1", "NO_QUORUM=1"); r.code == 0 || !strings.Contains(r.stderr, "etcd") {
		t.Errorf("gantry env set without etcd's quorum: exit %d, stderr %q; want a failure that names etcd", r.code, r.stderr)
	}
	for _, id := range stopped {
		if err := c.docker.ContainerStart(t.Context(), id, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, "a deploy to work again once etcd's members are back", func() bool {
		return p.run("", nil, "env", "set", "-a", "web1", "QUORUM_BACK=1").code == 0
	})
	version := p.current("web1")
	eventually(t, 2*time.Minute, "the release after the quorum returned at 6 jobs", func() bool {
		return p.settled("web1", version, 6)
	})

	// The host of PostgreSQL lost: the apps keep serving through the
	// other hosts' routers, and a change fails saying why; once it is
	// back, changes work again.
	c.lose(h1)
	for range 5 {
		if !c.serves("web1", h2, h3) || !c.serves("hello", h2, h3) {
			t.Fatal("with the host of PostgreSQL lost, the other hosts' routers stopped serving")
		}
		time.Sleep(time.Second)
	}
	if r := h2.p.run("", nil, "env", "set", "-a", "web1", "NO_DATABASE=1"); r.code == 0 || !strings.Contains(r.stderr, "PostgreSQL") {
		t.Errorf("gantry env set with the host of PostgreSQL lost: exit %d, stderr %q; want a failure that names PostgreSQL", r.code, r.stderr)
	}
	c.up(h1)
	eventually(t, 2*time.Minute, "a change to work again once the host of PostgreSQL is back", func() bool {
		return h2.p.run("", nil, "env", "set", "-a", "web1", "DATABASE_BACK=1").code == 0
	})
	version = p.current("web1")
	eventually(t, 2*time.Minute, "the release after PostgreSQL returned at 6 jobs", func() bool {
		return p.settled("web1", version, 6)
	})

	// Full-cluster reboot, three times: every host lost at once, then
	// gantryd up on each data dir; every app serves through every
	// host's router within 60 s of the last up.
	for cycle := 1; cycle <= 3; cycle++ {
		c.lose(c.hosts...)
		c.up(c.hosts...)
		last := time.Now()
		eventually(t, 60*time.Second, fmt.Sprintf("reboot %d: web1 and hello served through every host's router", cycle), func() bool {
			return c.serves("web1", c.hosts...) && c.serves("hello", c.hosts...)
		})
		t.Logf("reboot %d: every router served both apps %s after the last gantryd up", cycle, time.Since(last).Round(100*time.Millisecond))
		eventually(t, time.Minute, fmt.Sprintf("reboot %d: 6 web jobs up and 3 hosts", cycle), func() bool {
			jobs := webJobs(p, "web1", version)
			return jobs[h1.id]+jobs[h2.id]+jobs[h3.id] == 6 && len(c.hostStates(p)) == 3
		})
		if out := p.ok("env", "-a", "web1"); !strings.Contains(out, "DATABASE_BACK") {
			t.Errorf("reboot %d: the app's config lost: %s", cycle, out)
		}
	}
}

// checkEtcdRefuses checks that the etcd at addr refuses a client that has
// no certificate of the cluster's CA, and does not answer without TLS.
func checkEtcdRefuses(t *testing.T, addr string) {
	t.Helper()
	for name, cfg := range map[string]clientv3.Config{
		"no certificate": {TLS: &tls.Config{InsecureSkipVerify: true}},
		"no TLS":         {},
	} {
		scheme := "https://"
		if cfg.TLS == nil {
			scheme = "http://"
		}
		cfg.Endpoints, cfg.DialTimeout, cfg.Logger = []string{scheme + addr}, 3*time.Second, zap.NewNop()
		cli, err := clientv3.New(cfg)
		if err != nil {
			continue // refused at once
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err = cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		cli.Close()
		if err == nil {
			t.Errorf("etcd at %s answered a client with %s", addr, name)
		}
	}
}

// goWebRepo makes a git repository of the Go web test app, registers a
// new key and creates app through p, inside the repository: its gantry
// remote is the git receiver of p's host.
func goWebRepo(t *testing.T, p *platform, app string) (repo, keyFile string) {
	t.Helper()
	keyFile = filepath.Join(p.home, ".ssh", "id_"+app)
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, keyFile)
	p.ok("key", "add", keyFile+".pub")
	repo = t.TempDir()
	copyDir(t, filepath.Join(repoRoot(), "slugbuilder", "testdata", "apps", "go-web"), repo)
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "first")
	if r := p.run(repo, nil, "create", app); r.code != 0 {
		t.Fatalf("create %s: %d %s %s", app, r.code, r.stdout, r.stderr)
	}
	return repo, keyFile
}
