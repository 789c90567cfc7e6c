package router

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/router/types"
)

func TestParseHandoverMsg(t *testing.T) {
	long := `{"v":1,"type":"error","code":"failed","message":"` + strings.Repeat("x", maxHandoverMsg) + `"}`
	for _, tc := range []struct {
		name string
		msg  string
		nfds int
		err  string // empty: valid
	}{
		{"take", `{"v":1,"type":"take","pid":7,"listeners":[{"name":"http","addr":"127.0.0.1:80"},{"name":"https","addr":"127.0.0.1:443"}]}`, 0, ""},
		{"listeners", `{"v":1,"type":"listeners","listeners":[{"name":"http","addr":"127.0.0.1:80"},{"name":"metrics","addr":"127.0.0.1:0"}]}`, 2, ""},
		{"ready", `{"v":1,"type":"ready"}`, 0, ""},
		{"done", `{"v":1,"type":"done"}`, 0, ""},
		{"error", `{"v":1,"type":"error","code":"busy","message":"m"}`, 0, ""},
		{"unknown fields are ignored", `{"v":1,"type":"ready","later":true}`, 0, ""},
		{"not json", `ready`, 0, "handover message:"},
		{"no version", `{"type":"ready"}`, 0, "version 0"},
		{"other version", `{"v":2,"type":"ready"}`, 0, "version 2"},
		{"unknown type", `{"v":1,"type":"hello"}`, 0, `type "hello"`},
		{"listeners without fds", `{"v":1,"type":"listeners","listeners":[{"name":"http","addr":"127.0.0.1:80"}]}`, 0, "0 file descriptors, want 1"},
		{"more fds than listeners", `{"v":1,"type":"listeners","listeners":[{"name":"http","addr":"127.0.0.1:80"}]}`, 2, "2 file descriptors"},
		{"fds on ready", `{"v":1,"type":"ready"}`, 1, "1 file descriptors, want 0"},
		{"fds on take", `{"v":1,"type":"take","listeners":[{"name":"http","addr":"a:1"}]}`, 1, "want 0"},
		{"no http", `{"v":1,"type":"take","listeners":[{"name":"https","addr":"127.0.0.1:443"}]}`, 0, "without the http listener"},
		{"unknown listener", `{"v":1,"type":"take","listeners":[{"name":"http","addr":"a:1"},{"name":"ftp","addr":"a:21"}]}`, 0, `unknown listener "ftp"`},
		{"listener twice", `{"v":1,"type":"take","listeners":[{"name":"http","addr":"a:1"},{"name":"http","addr":"a:2"}]}`, 0, "twice"},
		{"bad addr", `{"v":1,"type":"take","listeners":[{"name":"http","addr":"nowhere"}]}`, 0, "want host:port"},
		{"listeners on ready", `{"v":1,"type":"ready","listeners":[{"name":"http","addr":"a:1"}]}`, 0, "with listeners"},
		{"error without code", `{"v":1,"type":"error"}`, 0, `code ""`},
		{"error with unknown code", `{"v":1,"type":"error","code":"nope"}`, 0, `code "nope"`},
		{"too long", long, 0, "over 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseHandoverMsg([]byte(tc.msg), tc.nfds)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one with %q", err, tc.err)
			}
		})
	}
}

func FuzzParseHandoverMsg(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"type":"take","pid":7,"listeners":[{"name":"http","addr":"127.0.0.1:80"}]}`,
		`{"v":1,"type":"listeners","listeners":[{"name":"http","addr":"[::1]:80"},{"name":"https","addr":":443"}]}`,
		`{"v":1,"type":"ready"}`, `{"v":1,"type":"error","code":"closing","message":"x"}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s), 0)
		f.Add([]byte(s), 1)
	}
	f.Fuzz(func(t *testing.T, b []byte, nfds int) {
		m, err := parseHandoverMsg(b, nfds)
		if err != nil {
			return
		}
		// What parses survives a round trip with the same meaning.
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %+v: %v", m, err)
		}
		m2, err := parseHandoverMsg(again, nfds)
		if err != nil {
			t.Fatalf("%s parsed, its re-encoding %s does not: %v", b, again, err)
		}
		if m2.Type != m.Type || len(m2.Listeners) != len(m.Listeners) || m2.Code != m.Code {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
	})
}

func TestPeerUIDIsOwnUser(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*net.UnixConn
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c.(*net.UnixConn))
	}
	uid, err := peerUID(conns[0])
	if err != nil || uid != os.Getuid() {
		t.Fatalf("peerUID = %d, %v; want %d", uid, err, os.Getuid())
	}
	if err := checkPeer(conns[1]); err != nil {
		t.Fatalf("checkPeer: %v", err)
	}
}

// runRouter is a router started with Run, as gantryd router starts it.
type runRouter struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// handoverEnv is an env with one app behind fixed addresses and a handover
// socket, for routers that follow one another.
type handoverEnv struct {
	*env
	httpAddr, httpsAddr string
	sock                string
	client              *http.Client
}

func newHandoverEnv(t *testing.T) *handoverEnv {
	e := newEnv(t)
	b := newEchoBackend(t, "one")
	e.register("app-web", "job1", b.addr())
	e.putRoute(types.Route{Domain: "app.test", App: "app", Service: "app-web"})
	return &handoverEnv{env: e, httpAddr: testenv.FreeAddr(t), httpsAddr: testenv.FreeAddr(t),
		sock: filepath.Join(t.TempDir(), "router", "handover.sock"), client: httpClient(t)}
}

// run starts Run in the background; mod may change the config first. The
// router is stopped when the test ends.
func (he *handoverEnv) run(mod func(*Config)) *runRouter {
	t := he.t
	t.Helper()
	cfg := Config{
		Cluster:        he.space.Cluster(),
		Etcd:           he.etcd,
		HTTPAddr:       he.httpAddr,
		HTTPSAddr:      he.httpsAddr,
		HandoverSocket: he.sock,
		Logger:         testLogger(t),
		ShutdownDelay:  -1,
		ShutdownGrace:  5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runRouter{cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		if err := rr.stop(); err != nil {
			t.Logf("router Run: %v", err)
		}
	})
	return rr
}

// stop cancels Run's context and waits for it.
func (rr *runRouter) stop() error {
	rr.once.Do(func() {
		rr.cancel()
		rr.err = <-rr.done
	})
	return rr.err
}

// ended waits up to a minute for Run to return by itself.
func (rr *runRouter) ended(t *testing.T) error {
	t.Helper()
	select {
	case err := <-rr.done:
		rr.once.Do(func() { rr.err = err })
		return err
	case <-time.After(time.Minute):
		t.Fatal("router still running a minute later")
		return nil
	}
}

// running reports whether Run has not returned.
func (rr *runRouter) running() bool {
	select {
	case err := <-rr.done:
		rr.done <- err
		return false
	default:
		return true
	}
}

// ok reports whether a GET through the HTTP address answers 200.
func (he *handoverEnv) ok() bool {
	req, _ := http.NewRequest(http.MethodGet, "http://"+he.httpAddr+"/", nil)
	req.Host = "app.test"
	resp, err := he.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// serving waits until the HTTP address answers 200 and the handover socket
// answers.
func (he *handoverEnv) serving() {
	he.t.Helper()
	waitFor(he.t, "the router answering on its address and its handover socket", 30*time.Second, func() bool {
		c, err := net.Dial("unixpacket", he.sock)
		if err != nil {
			return false
		}
		c.Close()
		return he.ok()
	})
}

func TestHandoverToNewRouter(t *testing.T) {
	he := newHandoverEnv(t)
	old := he.run(nil)
	he.serving()
	if fi, err := os.Stat(he.sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("handover socket: %v, %v; want mode 0600", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(he.sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("handover socket dir: %v, %v; want mode 0700", fi, err)
	}
	for i := range 3 {
		next := he.run(nil)
		if err := old.ended(t); err != nil {
			t.Fatalf("old router %d after the handover: %v", i, err)
		}
		he.serving()
		if !next.running() {
			t.Fatalf("new router %d ended: %v", i, next.stop())
		}
		old = next
	}
	if err := old.stop(); err != nil {
		t.Fatalf("last router: %v", err)
	}
	if _, err := os.Stat(he.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("handover socket after the last router stopped: %v; want it gone", err)
	}
	if he.ok() {
		t.Error("a request was answered after the last router stopped")
	}
}

// TestHandoverStayAfterHandover hands the listeners of a router with
// StayAfterHandover over: the new router says it is ready (Config.Ready)
// once it serves them, and the old one, drained, stays until its context
// ends, then returns nil, as a platform job's SIGTERM ends it.
func TestHandoverStayAfterHandover(t *testing.T) {
	he := newHandoverEnv(t)
	var oldLog lockedBuffer
	var oldReady, nextReady atomic.Int32
	old := he.run(func(c *Config) {
		c.StayAfterHandover = true
		c.Logger = slog.New(slog.NewTextHandler(&oldLog, nil))
		c.Ready = func() { oldReady.Add(1) }
	})
	he.serving()
	// Ready is called once the router serves, maybe a moment after it
	// first answered.
	waitFor(t, "the first router ready", 30*time.Second, func() bool { return oldReady.Load() >= 1 })
	next := he.run(func(c *Config) {
		c.StayAfterHandover = true
		c.Ready = func() { nextReady.Add(1) }
	})
	waitFor(t, "the new router ready", 30*time.Second, func() bool { return nextReady.Load() == 1 })
	waitFor(t, "the old router drained and waiting", 30*time.Second, func() bool {
		return strings.Contains(oldLog.String(), "waiting to be stopped")
	})
	if !old.running() {
		t.Fatalf("the old router returned after handing over: %v", old.stop())
	}
	if !he.ok() {
		t.Error("the new router does not answer")
	}
	if err := old.stop(); err != nil {
		t.Errorf("the old router on its context's end: %v", err)
	}
	if !next.running() || !he.ok() {
		t.Error("the new router stopped serving when the old one ended")
	}
	if o, n := oldReady.Load(), nextReady.Load(); o != 1 || n != 1 {
		t.Errorf("the routers said ready %d and %d times, want once each", o, n)
	}
}

// fakeTaker asks the router on sock for its listeners and holds them
// without ever reporting ready.
func fakeTaker(t *testing.T, sock string, want []handoverListener) (*net.UnixConn, []*os.File) {
	t.Helper()
	c, err := net.Dial("unixpacket", sock)
	if err != nil {
		t.Fatal(err)
	}
	hc := handoverConn{c.(*net.UnixConn)}
	if err := hc.send(handoverMsg{Type: msgTake, Listeners: want}); err != nil {
		t.Fatal(err)
	}
	m, files, err := hc.recv(handoverStepTimeout)
	if err != nil || m.Type != msgListeners {
		t.Fatalf("take: %+v, %v", m, err)
	}
	return hc.c, files
}

func TestHandoverRefusals(t *testing.T) {
	he := newHandoverEnv(t)
	old := he.run(nil)
	he.serving()
	want := []handoverListener{{lnHTTP, he.httpAddr}, {lnHTTPS, he.httpsAddr}}

	// A first new router holds the listeners without reporting ready: a
	// second one is told the handover is busy, and fails.
	c, files := fakeTaker(t, he.sock, want)
	if len(files) != 2 {
		t.Fatalf("got %d listeners, want 2", len(files))
	}
	second := he.run(nil)
	if err := second.ended(t); !errors.Is(err, ErrHandoverBusy) {
		t.Fatalf("second new router: %v, want ErrHandoverBusy", err)
	}

	// The first one dies before its ready: the old router keeps serving
	// (the sockets were never closed) and can hand over again.
	c.Close()
	for _, f := range files {
		f.Close()
	}
	if !he.ok() || !old.running() {
		t.Fatal("old router not serving after a new router died mid-handover")
	}

	// A new router on another HTTPS address is refused, and the old one
	// keeps serving.
	other := he.run(func(c *Config) { c.HTTPSAddr = testenv.FreeAddr(t) })
	if err := other.ended(t); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Fatalf("new router on another address: %v, want a mismatch", err)
	}
	if !he.ok() || !old.running() {
		t.Fatal("old router not serving after a refused handover")
	}

	// Then a proper one takes over.
	next := he.run(nil)
	if err := old.ended(t); err != nil {
		t.Fatalf("old router: %v", err)
	}
	he.serving()
	if !next.running() {
		t.Fatalf("new router ended: %v", next.stop())
	}
}

func TestHandoverDuringShutdown(t *testing.T) {
	he := newHandoverEnv(t)
	// The old router is stopping and, in its shutdown delay, still
	// accepts and offers its listeners: the new router takes them, and
	// the old one stops without waiting out the delay.
	old := he.run(func(c *Config) { c.ShutdownDelay = 10 * time.Minute })
	he.serving()
	old.cancel()
	next := he.run(nil)
	if err := old.ended(t); err != nil {
		t.Fatalf("old router: %v", err)
	}
	he.serving()
	if !next.running() {
		t.Fatalf("new router ended: %v", next.stop())
	}
}

func TestHandoverNoOldRouter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, sock string)
	}{
		{"no socket", func(*testing.T, string) {}},
		{"stale socket", func(t *testing.T, sock string) {
			// A router that was killed leaves its socket file.
			if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
				t.Fatal(err)
			}
			ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			he := newHandoverEnv(t)
			tc.setup(t, he.sock)
			rr := he.run(nil)
			he.serving()
			if !rr.running() {
				t.Fatalf("router ended: %v", rr.stop())
			}
		})
	}
}

// TestTakerEnd runs a new router's side of a handover against a giver of
// the test's, which ends the exchange in each way a running router can.
func TestTakerEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(hc handoverConn) // after the listeners are sent
		err  string                // empty: the taker keeps the listeners
	}{
		{"done", func(hc handoverConn) {
			hc.recv(handoverStepTimeout)
			hc.send(handoverMsg{Type: msgDone})
		}, ""},
		{"giver dies", func(handoverConn) {}, ""},
		{"giver gave up before the ready", func(hc handoverConn) {
			hc.send(handoverMsg{Type: msgError, Code: codeFailed, Message: "no ready"})
		}, "called the handover off (failed): no ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "h.sock")
			ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			tcp, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tcp.Close() })
			addr := tcp.Addr().String()
			gave := make(chan error, 1)
			go func() {
				c, err := ln.AcceptUnix()
				if err != nil {
					gave <- err
					return
				}
				defer c.Close()
				hc := handoverConn{c}
				if _, _, err := hc.recv(handoverStepTimeout); err != nil {
					gave <- err
					return
				}
				f, err := tcp.(*net.TCPListener).File()
				if err != nil {
					gave <- err
					return
				}
				err = hc.send(handoverMsg{Type: msgListeners, Listeners: []handoverListener{{lnHTTP, addr}}}, f)
				f.Close()
				gave <- err
				tc.end(hc)
			}()
			tk, lns, err := take(t.Context(), sock, []handoverListener{{lnHTTP, addr}}, testLogger(t))
			if err != nil {
				t.Fatalf("take: %v", err)
			}
			if err := <-gave; err != nil {
				t.Fatalf("fake giver: %v", err)
			}
			t.Cleanup(func() { lns[lnHTTP].Close() })
			if got := lns[lnHTTP].Addr().String(); got != addr {
				t.Fatalf("took a listener on %s, want %s", got, addr)
			}
			err = tk.ready()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("ready: %v, want none", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("ready: %v, want an error with %q", err, tc.err)
			}
		})
	}
}

func TestConfigHandoverSocket(t *testing.T) {
	base := Config{Cluster: "c1", Etcd: &clientv3.Client{}, HTTPAddr: "127.0.0.1:80"}
	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"none", "", true},
		{"absolute", "/var/lib/gantry/router/handover.sock", true},
		{"relative", "router/handover.sock", false},
		{"too long", "/" + strings.Repeat("d", 100) + "/handover.sock", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.HandoverSocket = tc.path
			err := cfg.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
