package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/clustertls"
)

// TestRoleProcesses runs the platform as separate role processes of one
// gantryd binary against one data dir, as its containers will: `gantryd
// etcd`, `logaggregator`, `controller` (on a PostgreSQL of its own, by
// --database-url), `host`, `scheduler`, `router` and `gitreceiver serve`,
// which find each other only over the network. An image app deployed
// through the controller answers 200 through the router, its request
// lines reach its log through the aggregator, and every role stops cleanly
// on SIGTERM.
func TestRoleProcesses(t *testing.T) {
	rp := startRoleProcesses(t)
	r, p := rp.roles, rp.platform
	tc, err := clustertls.ClientConfig(filepath.Join(rp.data, node.TLSDir))
	if err != nil {
		t.Fatal(err)
	}
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tc.RootCAs, MinVersion: tls.VersionTLS12}}}
	if resp, err := anon.Get(rp.etcdURL + "/v3/kv/range"); err == nil {
		resp.Body.Close()
		t.Errorf("etcd answered %s to a client without a certificate", resp.Status)
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(rp.etcdURL, "https://") + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("etcd answered %s over plain HTTP", resp.Status)
	}

	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", rp.image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=1")
	eventually(t, 2*time.Minute, "web1 answers 200 through the router", func() bool {
		code, _, err := p.get("web1.localhost", "/")
		return err == nil && code == http.StatusOK
	})
	eventually(t, time.Minute, "the router's request line in web1's log", func() bool {
		res := p.run("", nil, "log", "-a", "web1")
		return res.code == 0 && strings.Contains(res.stdout, "status=200")
	})
	r.stopAll(rp.data)
}

// roleProcesses is the platform run as separate role processes of one
// gantryd binary on one data dir (see TestRoleProcesses).
type roleProcesses struct {
	roles    *roles
	platform *platform // the CLI's view: API URL, token, router URL
	data     string    // the data dir every role shares
	etcdURL  string
	image    string // the httpserver test image, built in the engine
}

// startRoleProcesses starts `gantryd etcd`, `logaggregator`, `controller`
// (on a PostgreSQL of its own, by --database-url), `host`, `scheduler`,
// `router` and `gitreceiver serve` on free loopback ports and one data
// dir, and waits until etcd, the log aggregator and the controller answer.
// The test's end stops them all and removes the cluster's containers.
func startRoleProcesses(t *testing.T) *roleProcesses {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs Docker, PostgreSQL and the binaries")
	}
	gantryd, gantry := buildBinaries(t)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	pg := testenv.StartPostgres(t, "")
	// A free port can be taken by another test between its pick and a
	// role's bind: then new ports, in a new data dir and database.
	for attempt := 1; ; attempt++ {
		db := fmt.Sprintf("gantry%d", attempt)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := pg.CreateDatabase(ctx, db)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		r := &roles{t: t, gantryd: gantryd, home: t.TempDir()}
		rp, err := r.startAll(pg.URL(db))
		if err == nil {
			rp.platform.gantry, rp.image = gantry, image
			return rp
		}
		taken := r.portTaken()
		r.abort()
		if attempt == 3 || !taken {
			t.Fatal(err)
		}
		t.Logf("a role could not bind a port picked for it, trying other ports: %v", err)
	}
}

// startAll starts every role on new free ports and a new data dir, with
// the controller on the database at dbURL, and waits until etcd, the log
// aggregator and the controller answer and every role still runs.
func (r *roles) startAll(dbURL string) (*roleProcesses, error) {
	t := r.t
	t.Helper()
	data := t.TempDir()
	etcdAddr, apiAddr, httpAddr, logAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	etcdURL, apiURL, logURL := "https://"+etcdAddr, "http://"+apiAddr, "http://"+logAddr
	sshAddr := testenv.FreeAddr(t)
	t.Cleanup(func() { r.stopAll(data) })

	dataArgs := []string{"--data", data}
	etcdArgs := []string{"--data", data, "--etcd", etcdURL}
	r.start("etcd", slices.Concat(dataArgs, []string{"--client-addr", etcdAddr, "--peer-addr", testenv.FreeAddr(t)}))
	// etcd serves only clients with a certificate of the cluster CA,
	// which the first role made in the data dir.
	eventually(t, time.Minute, "the cluster certificates in the data dir", func() bool {
		_, err := os.Stat(filepath.Join(data, node.TLSDir, clustertls.HostCertFile))
		return err == nil
	})
	tc, err := clustertls.ClientConfig(filepath.Join(data, node.TLSDir))
	if err != nil {
		t.Fatal(err)
	}
	member := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	if err := r.waitHealthyWith(member, "etcd", etcdURL+"/health"); err != nil {
		return nil, err
	}
	r.start("logaggregator", slices.Concat(dataArgs, []string{"--addr", logAddr}))
	r.start("controller", slices.Concat(etcdArgs, []string{"--addr", apiAddr, "--database-url", dbURL, "--log-url", logURL,
		"--git-url", "ssh://git@" + sshAddr, "--router-http-url", "http://localhost:" + port(t, "http://"+httpAddr)}))
	r.start("host", slices.Concat(etcdArgs, []string{"--addr", testenv.FreeAddr(t), "--log-url", logURL}))
	r.start("scheduler", etcdArgs)
	r.start("router", slices.Concat(etcdArgs, []string{"--http-addr", httpAddr, "--https-addr", testenv.FreeAddr(t), "--log-url", logURL}))
	r.start("gitreceiver", slices.Concat([]string{"serve"}, dataArgs, []string{"--addr", sshAddr, "--controller", apiURL}))
	if err := r.waitHealthy("logaggregator", logURL+"/healthz"); err != nil {
		return nil, err
	}
	if err := r.waitHealthy("controller", apiURL+"/healthz"); err != nil {
		return nil, err
	}
	if err := r.exited(); err != nil {
		return nil, err
	}

	// The controller role wrote the CLI's admin.env into the data dir, as
	// gantryd up does.
	p := &platform{t: t, home: r.home, data: data, apiURL: apiURL, httpURL: "http://" + httpAddr}
	p.token = adminToken(t, data)
	return &roleProcesses{roles: r, platform: p, data: data, etcdURL: etcdURL}, nil
}

// roles are gantryd role processes, stopped in the reverse order of their
// start.
type roles struct {
	t       *testing.T
	gantryd string
	home    string
	procs   []*roleProc
	stopped bool
}

// roleProc is one running role.
type roleProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncWriter
	done chan error
}

// start runs `gantryd <name> args...`.
func (r *roles) start(name string, args []string) {
	r.t.Helper()
	r.procs = append(r.procs, r.spawn(name, args, &syncWriter{buf: &bytes.Buffer{}}))
}

// spawn starts one run of a role, its output going to out.
func (r *roles) spawn(name string, args []string, out *syncWriter) *roleProc {
	r.t.Helper()
	cmd := exec.Command(r.gantryd, append([]string{"--log-level", "debug", name}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+r.home)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start gantryd %s: %v", name, err)
	}
	p := &roleProc{name: name, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p
}

// proc returns the role's process entry.
func (r *roles) proc(name string) (int, *roleProc) {
	r.t.Helper()
	for i, p := range r.procs {
		if p.name == name {
			return i, p
		}
	}
	r.t.Fatalf("no role %s", name)
	return 0, nil
}

// waitHealthy polls url until it answers 200; it fails when the role
// exits first or after a minute.
func (r *roles) waitHealthy(name, url string) error {
	return r.waitHealthyWith(&http.Client{Timeout: 2 * time.Second}, name, url)
}

// waitHealthyWith waits until client gets a 200 from url; it fails when
// the role exits first or a minute passes.
func (r *roles) waitHealthyWith(client *http.Client, name, url string) error {
	_, p := r.proc(name)
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("gantryd %s exited while starting: %v\n%s", name, err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gantryd %s: %s not healthy after a minute (last: %v)", name, url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exited returns an error naming the first role that is no longer
// running, and nil when every role runs.
func (r *roles) exited() error {
	for _, p := range r.procs {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("gantryd %s exited while starting: %v\n%s", p.name, err, p.out.String())
		default:
		}
	}
	return nil
}

// portTaken reports whether a role that exited could not bind its port.
func (r *roles) portTaken() bool {
	for _, p := range r.procs {
		select {
		case err := <-p.done:
			p.done <- err
			if strings.Contains(p.out.String(), "address already in use") {
				return true
			}
		default:
		}
	}
	return false
}

// abort kills every role of a start that failed, newest first, and waits
// until each has exited.
func (r *roles) abort() {
	r.stopped = true
	for i := len(r.procs) - 1; i >= 0; i-- {
		p := r.procs[i]
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
	}
}

// stopAll sends SIGTERM to every role, newest first, and checks that each
// exits cleanly within a minute (else it is killed); then it removes the
// cluster's app containers and, when the test failed, logs each role's
// output. It runs once.
func (r *roles) stopAll(data string) {
	if r.stopped {
		return
	}
	r.stopped = true
	for i := len(r.procs) - 1; i >= 0; i-- {
		p := r.procs[i]
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			r.t.Errorf("SIGTERM gantryd %s: %v", p.name, err)
		}
		select {
		case err := <-p.done:
			if err != nil {
				r.t.Errorf("gantryd %s exited with %v after SIGTERM", p.name, err)
			}
		case <-time.After(time.Minute):
			p.cmd.Process.Kill()
			<-p.done
			r.t.Errorf("gantryd %s did not stop within a minute of SIGTERM", p.name)
		}
	}
	if r.t.Failed() {
		for _, p := range r.procs {
			r.t.Logf("gantryd %s output:\n%s", p.name, p.out.String())
		}
	}
	// App containers outlive the host agent by design; the test removes
	// its cluster's.
	if id, err := os.ReadFile(filepath.Join(data, node.ClusterIDFile)); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := testenv.RemoveContainers(ctx, testenv.Docker(r.t), strings.TrimSpace(string(id))); err != nil {
			r.t.Errorf("remove the cluster's containers: %v", err)
		}
	}
}
