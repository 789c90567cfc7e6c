package router

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/types"
)

// TestZeroFailedRequestsWhileInstancesChange drives a steady load through
// the router while an instance is added, one is removed gracefully
// (deregistered, then stopped once its in-flight requests are done) and one
// is killed (listener and connections closed at once, like SIGKILL). Half
// of the load goes over keep-alive connections and half over a fresh
// connection per request; a quarter of the requests are POSTs.
func TestZeroFailedRequestsWhileInstancesChange(t *testing.T) {
	const (
		total   = 20000
		workers = 8
		budget  = 4 * time.Minute // 20,000 requests take 10-60 s; a loaded CI machine gets room
	)
	e := newEnv(t)
	tr := e.startRouter(nil)
	b := make([]*echoBackend, 4)
	for i := range b {
		b[i] = newEchoBackend(t, fmt.Sprintf("b%d", i))
	}
	for i := range 3 {
		e.register("load-web", b[i].name, b[i].addr())
	}
	e.putRoute(types.Route{Domain: "load.test", App: "load", Service: "load-web"})
	inTable := func(addr string) bool {
		tg := tr.table.Load().lookup("load.test")
		if tg == nil {
			return false
		}
		for _, be := range tg.backends {
			if be.addr == addr {
				return true
			}
		}
		return false
	}
	waitFor(t, "three instances routed", 30*time.Second, func() bool {
		return inTable(b[0].addr()) && inTable(b[1].addr()) && inTable(b[2].addr())
	})

	// Phases: a request counts in the latest phase it overlapped.
	const (
		steady = iota
		added
		graceful
		killed
		phases
	)
	names := [phases]string{"steady", "instance added", "graceful removal", "abrupt kill"}
	var phase atomic.Int32
	var ok, failed [phases][2]atomic.Int64 // [phase][0 GET, 1 POST]
	var firstErr [phases][2]atomic.Value
	var issued atomic.Int64
	deadline := time.Now().Add(budget)

	keepAlive := &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
	fresh := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	t.Cleanup(keepAlive.CloseIdleConnections)
	var wg sync.WaitGroup
	for w := range workers {
		client := &http.Client{Transport: keepAlive, Timeout: 10 * time.Second}
		if w%2 == 1 {
			client = &http.Client{Transport: fresh, Timeout: 10 * time.Second}
		}
		wg.Go(func() {
			for {
				i := issued.Add(1)
				if i > total || time.Now().After(deadline) {
					return
				}
				m, method, body := 0, http.MethodGet, io.Reader(nil)
				if i%4 == 0 {
					m, method, body = 1, http.MethodPost, strings.NewReader("payload")
				}
				start := phase.Load()
				req, _ := http.NewRequest(method, "http://"+tr.httpAddr+"/", body)
				req.Host = "load.test"
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode/100 != 2 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				p := max(start, phase.Load())
				if err != nil {
					failed[p][m].Add(1)
					firstErr[p][m].CompareAndSwap(nil, err.Error())
				} else {
					ok[p][m].Add(1)
				}
			}
		})
	}
	at := func(frac float64) {
		waitFor(t, "load progress", budget, func() bool { return issued.Load() >= int64(frac*total) })
	}

	at(0.15)
	phase.Store(added)
	e.register("load-web", b[3].name, b[3].addr())
	waitFor(t, "new instance gets traffic", 30*time.Second, func() bool { return b[3].count.Load() > 0 })

	at(0.35)
	phase.Store(graceful)
	drained := tr.table.Load().lookup("load.test").backends
	e.deregister("load-web", b[0].name)
	waitFor(t, "deregistered instance out of the table", 30*time.Second, func() bool { return !inTable(b[0].addr()) })
	// The router sends a drained backend nothing once it has no request in
	// flight to it; the host agent's drain delay stands for this wait.
	for _, be := range drained {
		if be.addr == b[0].addr() {
			waitFor(t, "no request in flight to the deregistered instance", 30*time.Second, func() bool {
				return be.draining.Load() && be.inflight.Load() == 0
			})
		}
	}
	b[0].Close() // waits for its in-flight requests

	at(0.55)
	phase.Store(killed)
	b[1].Listener.Close()
	b[1].CloseClientConnections()
	at(0.75)
	e.deregister("load-web", b[1].name) // the host agent notices the dead job

	wg.Wait()
	var sum int64
	for p := range phases {
		g, po := ok[p][0].Load()+failed[p][0].Load(), ok[p][1].Load()+failed[p][1].Load()
		sum += g + po
		t.Logf("%-17s GET %5d (failed %d)  POST %5d (failed %d)", names[p]+":", g, failed[p][0].Load(), po, failed[p][1].Load())
		for m, name := range []string{"GET", "POST"} {
			if v := firstErr[p][m].Load(); v != nil {
				t.Logf("  first %s failure: %v", name, v)
			}
		}
	}
	for i, be := range b {
		t.Logf("instance b%d served %d requests", i, be.count.Load())
	}
	if sum < total {
		t.Fatalf("only %d of %d requests done within %v", sum, total, budget)
	}
	for p := range killed {
		for m := range 2 {
			if n := failed[p][m].Load(); n != 0 {
				t.Errorf("%s: %d failed requests, want 0", names[p], n)
			}
		}
	}
	if n := failed[killed][0].Load(); n != 0 {
		t.Errorf("abrupt kill: %d failed GET requests, want 0", n)
	}
}
