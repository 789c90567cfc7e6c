package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/router/types"
)

// TestRouterHandover replaces a `gantryd router` process by a new one five
// times in a row under a steady load (keep-alive and fresh HTTP
// connections, HTTP/1.1 and HTTP/2 over TLS) and requires every request to
// succeed: each new router takes the listening sockets of the running one
// through <data>/router/handover.sock, and the old one drains and exits.
// The first router, with no router before it, binds the addresses itself,
// and so does a router started after the last one stopped.
func TestRouterHandover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs the gantryd binary and an embedded etcd")
	}
	gantryd, _ := buildBinaries(t)
	etcdSrv := testenv.EtcdServer(t)
	etcd, err := etcdSrv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := node.Open(ctx, data)
	if err != nil {
		t.Fatal(err)
	}

	// One app with two instances, as a host agent and the controller
	// would write them.
	space := keyspace.MustNew(n.Cluster)
	lease, err := etcd.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	disc := discovery.New(etcd, space, 5*time.Second, nil)
	for i := range 2 {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		}))
		t.Cleanup(b.Close)
		if err := disc.Register(ctx, lease.ID, "app-web", discovery.Instance{ID: fmt.Sprintf("job%d", i), Addr: b.Listener.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	route, _ := json.Marshal(types.Route{Domain: "app.test", App: "app", Service: "app-web"})
	if _, err := etcd.Put(ctx, space.Route("app.test"), string(route)); err != nil {
		t.Fatal(err)
	}

	httpAddr, httpsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	start := func() *routerProc {
		return startRouterProc(t, gantryd, "--data", data, "--etcd", etcdSrv.Endpoint(),
			"--http-addr", httpAddr, "--https-addr", httpsAddr)
	}

	first := start()
	eventually(t, time.Minute, "the first router answers 200", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/")
		if err == nil {
			resp.Body.Close()
		}
		// The Host is 127.0.0.1: a 404 says the router serves.
		return err == nil && resp.StatusCode == http.StatusNotFound
	})
	if !strings.Contains(first.out.String(), "no router answers on the handover socket") {
		t.Errorf("the first router did not bind the addresses itself:\n%s", first.out)
	}

	l := startHandoverLoad(t, httpAddr, httpsAddr)
	const handovers, perRound, total = 5, 3500, 20000
	cur := first
	for i := range handovers {
		l.waitRequests(t, int64(i+1)*perRound)
		next := start()
		if err := cur.wait(t); err != nil {
			t.Fatalf("router %d after handing over: %v\n%s", i, err, cur.out)
		}
		if !strings.Contains(cur.out.String(), "router handed its listeners over") {
			t.Fatalf("router %d exited without handing over:\n%s", i, cur.out)
		}
		if !next.running() {
			t.Fatalf("router %d ended after taking over: %v\n%s", i+1, next.wait(t), next.out)
		}
		cur = next
	}
	l.waitRequests(t, total)
	ok, failed, firstErrs := l.stop()
	t.Logf("%d requests succeeded, %d failed, over %d handovers", ok, failed, handovers)
	if failed > 0 || ok < total {
		t.Errorf("%d of %d requests failed; first errors:\n%s", failed, ok+failed, strings.Join(firstErrs, "\n"))
	}

	// A stop without a successor removes the socket; the next router
	// binds again.
	if err := cur.terminate(t); err != nil {
		t.Fatalf("last router on SIGTERM: %v\n%s", err, cur.out)
	}
	again := start()
	eventually(t, time.Minute, "a router after the last one stopped answers 200", func() bool {
		return l.get(l.keepAlive, "http://"+httpAddr+"/") == nil
	})
	if !strings.Contains(again.out.String(), "no router answers on the handover socket") {
		t.Errorf("the router after a stop did not bind the addresses itself:\n%s", again.out)
	}
	if err := again.terminate(t); err != nil {
		t.Fatalf("router on SIGTERM: %v\n%s", err, again.out)
	}
}

// routerProc is one `gantryd router` process.
type routerProc struct {
	cmd  *exec.Cmd
	out  *syncWriter
	done chan error
	err  error
	once sync.Once
}

func startRouterProc(t *testing.T, gantryd string, args ...string) *routerProc {
	t.Helper()
	p := &routerProc{out: &syncWriter{buf: &bytes.Buffer{}}, done: make(chan error, 1)}
	p.cmd = exec.Command(gantryd, append([]string{"--log-level", "debug", "router"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start gantryd router: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Kill()
			p.wait(t)
		}
		if t.Failed() {
			t.Logf("gantryd router (pid %d) output:\n%s", p.cmd.Process.Pid, p.out)
		}
	})
	return p
}

// wait waits up to two minutes for the process to exit by itself.
func (p *routerProc) wait(t *testing.T) error {
	t.Helper()
	p.once.Do(func() {
		select {
		case p.err = <-p.done:
		case <-time.After(2 * time.Minute):
			p.cmd.Process.Kill()
			<-p.done
			p.err = fmt.Errorf("pid %d still running two minutes later; killed", p.cmd.Process.Pid)
		}
	})
	return p.err
}

// terminate sends SIGTERM and waits for the exit.
func (p *routerProc) terminate(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return p.wait(t)
}

func (p *routerProc) running() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// handoverLoad sends requests for app.test through the router from several
// workers until stopped, and counts successes and failures: every
// transport error and every status other than 2xx is a failure.
type handoverLoad struct {
	keepAlive *http.Client
	ok, fail  atomic.Int64
	mu        sync.Mutex
	errs      []string
	stopc     chan struct{}
	wg        sync.WaitGroup
}

func startHandoverLoad(t *testing.T, httpAddr, httpsAddr string) *handoverLoad {
	// One config each: a transport that speaks HTTP/2 adds h2 to its
	// config's protocols.
	insecure := func() *tls.Config { return &tls.Config{InsecureSkipVerify: true, ServerName: "app.test"} }
	l := &handoverLoad{
		keepAlive: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
		stopc:     make(chan struct{}),
	}
	fresh := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h1tls := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: insecure(),
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	h2tls := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: insecure(), ForceAttemptHTTP2: true}}
	for _, c := range []*http.Client{l.keepAlive, fresh, h1tls, h2tls} {
		t.Cleanup(c.CloseIdleConnections)
	}
	for _, w := range []struct {
		c   *http.Client
		url string
		n   int
	}{
		{l.keepAlive, "http://" + httpAddr + "/", 3},
		{fresh, "http://" + httpAddr + "/", 2},
		{h1tls, "https://" + httpsAddr + "/", 1},
		{h2tls, "https://" + httpsAddr + "/", 1},
	} {
		for range w.n {
			l.wg.Go(func() {
				for {
					select {
					case <-l.stopc:
						return
					default:
					}
					if err := l.get(w.c, w.url); err != nil {
						l.fail.Add(1)
						l.mu.Lock()
						if len(l.errs) < 10 {
							l.errs = append(l.errs, err.Error())
						}
						l.mu.Unlock()
					} else {
						l.ok.Add(1)
					}
				}
			})
		}
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// get sends one GET for app.test and checks the answer.
func (l *handoverLoad) get(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Host = "app.test"
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("%s: body: %w", url, err)
	case resp.StatusCode/100 != 2 || string(body) != "ok":
		return fmt.Errorf("%s: %s %q (%s)", url, resp.Status, body, resp.Proto)
	}
	return nil
}

// waitRequests waits until n requests have been answered, failing the
// test when the load stalls for a minute.
func (l *handoverLoad) waitRequests(t *testing.T, n int64) {
	t.Helper()
	last, since := l.ok.Load()+l.fail.Load(), time.Now()
	for l.ok.Load()+l.fail.Load() < n {
		if done := l.ok.Load() + l.fail.Load(); done != last {
			last, since = done, time.Now()
		} else if time.Since(since) > time.Minute {
			t.Fatalf("load stalled at %d requests (%d failed)", done, l.fail.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the load and returns its counts and first errors; it may be
// called twice.
func (l *handoverLoad) stop() (ok, failed int64, errs []string) {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.fail.Load(), l.errs
}
