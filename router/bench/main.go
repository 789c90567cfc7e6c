//go:build linux

// Command bench measures Gantry's router against nginx on this machine, in
// one run: a small Go backend, the router in front of it (route and
// discovery entry written into a real embedded etcd, the production path),
// nginx as a keep-alive reverse proxy in front of the same backend, and the
// backend alone, each driven by wrk with the same settings. The targets
// take turns over several rounds, so that a burst of other load on the
// machine hits all of them alike; it prints the median requests/s, p50 and
// p99 of each and the ratios router/nginx and router/direct. Everything
// listens on 127.0.0.1 and is stopped, and its temporary directory removed,
// at the end, also on an error or Ctrl-C.
//
//	go run ./router/bench [-duration 15s] [-rounds 3] [-connections 64] [-threads 2] [-access-log=true] [-app-log]
//	    [-router-cpuprofile cpu.out] [-router-memprofile allocs.out]
//
// The same binary also runs the backend and the router as child processes
// (-role backend|router), so that each side has its own Go runtime, as
// nginx has its own processes. BENCH_ROUTER_PROCS in the environment sets
// the router process's GOMAXPROCS.
//
// It runs on Linux only (it reads /proc for the CPU time per request).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/logaggregator"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/router"
	"github.com/gantryhq/gantry/router/types"
)

const (
	cluster = "bench"
	domain  = "bench.test"
	service = "bench-web"
	body    = "Hello from the benchmark backend.\n"
)

func main() {
	role := flag.String("role", "", "internal: run as the benchmark's backend or router process")
	listen := flag.String("listen", "", "internal: listen address of the backend or router")
	etcdURL := flag.String("etcd", "", "internal: etcd endpoint for the router")
	accessPath := flag.String("access-file", "", "internal: router access log file")
	logURL := flag.String("log-url", "", "internal: the log aggregator the router ships its app lines to")
	dataDir := flag.String("data", "", "internal: the log aggregator's data dir")
	duration := flag.Duration("duration", 15*time.Second, "wrk duration per target and round")
	rounds := flag.Int("rounds", 3, "rounds; each measures every target once, in a rotating order")
	warmup := flag.Duration("warmup", 3*time.Second, "wrk warm-up per target before the first round, not measured")
	conns := flag.Int("connections", 64, "wrk connections")
	threads := flag.Int("threads", 2, "wrk threads")
	accessLog := flag.Bool("access-log", true, "access log on for both the router and nginx (buffered, to a file); false turns it off for both")
	appLog := flag.Bool("app-log", false, "the router also ships its line for each request to a log aggregator in a process of its own, as under gantryd up")
	cpuProfile := flag.String("router-cpuprofile", "", "write a CPU profile of the router process to this file")
	memProfile := flag.String("router-memprofile", "", "write an allocation profile of the router process to this file")
	nginxBin := flag.String("nginx", "nginx", "nginx binary (looked up in PATH, then /usr/sbin)")
	hold := flag.Bool("hold", false, "start the targets, print their addresses and wait for Ctrl-C instead of running wrk (to drive or profile them by hand)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "backend":
		err = runBackend(ctx, *listen)
	case "router":
		err = runRouter(ctx, *listen, *etcdURL, *accessPath, *logURL, *cpuProfile, *memProfile)
	case "logaggregator":
		err = runAggregator(ctx, *listen, *dataDir)
	case "":
		err = orchestrate(ctx, benchConfig{duration: *duration, rounds: *rounds, warmup: *warmup, conns: *conns, threads: *threads,
			accessLog: *accessLog, appLog: *appLog, cpuProfile: *cpuProfile, memProfile: *memProfile, nginx: *nginxBin, hold: *hold})
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "bench: interrupted; everything it started is stopped and removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runBackend serves the small body with keep-alive until ctx is done.
func runBackend(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	})}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// runRouter runs Gantry's router against the benchmark's etcd. The CPU
// profile covers the router's whole life (it is idle while the other
// targets are measured); the allocation profile is written at the end.
func runRouter(ctx context.Context, addr, endpoint, accessPath, logURL, cpuProfile, memProfile string) error {
	if memProfile != "" {
		defer writeAllocs(memProfile)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	cfg := router.Config{
		Cluster:       cluster,
		Etcd:          cli,
		HTTPAddr:      addr,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ShutdownDelay: -1,
		ShutdownGrace: 2 * time.Second,
	}
	if accessPath != "" {
		f, err := os.Create(accessPath)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.AccessLog = f
	}
	if logURL != "" {
		shipper, err := logclient.NewShipper(logclient.ShipperConfig{URL: logURL, Token: aggregatorToken, Logger: cfg.Logger})
		if err != nil {
			return err
		}
		defer shipper.Close()
		cfg.AppLog = shipper
	}
	return router.Run(ctx, cfg)
}

// aggregatorToken is the token of the benchmark's log aggregator.
const aggregatorToken = "bench-token"

// runAggregator serves a log aggregator with its data in dir until ctx is
// done.
func runAggregator(ctx context.Context, addr, dir string) error {
	srv, err := logaggregator.New(logaggregator.Config{DataDir: dir, Token: aggregatorToken,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return srv.Serve(ctx, ln)
}

// writeAllocs writes the allocation profile (every allocation sampled
// since the start) to file.
func writeAllocs(file string) {
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "router allocation profile:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "router allocation profile:", err)
	}
}

type benchConfig struct {
	duration, warmup       time.Duration
	rounds, conns, threads int
	accessLog, appLog      bool
	cpuProfile, memProfile string
	nginx                  string
	hold                   bool
}

// result is one wrk measurement, or the medians of several.
type result struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	errors   string
	// proxyCPU and backendCPU are the CPU time (user + system) the proxy
	// (all its processes) and the backend spent per request.
	proxyCPU, backendCPU time.Duration
}

func orchestrate(ctx context.Context, bc benchConfig) error {
	if bc.rounds < 1 || bc.duration < time.Second || bc.conns < 1 || bc.threads < 1 || bc.threads > bc.conns {
		return errors.New("want -rounds >= 1, -duration >= 1s and 1 <= -threads <= -connections")
	}
	nginxBin, err := lookPath(bc.nginx, "/usr/sbin")
	if err != nil {
		return fmt.Errorf("nginx not found (%w): run `make bench-router`, which installs it", err)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found (%w): run `make bench-router`, which installs it", err)
	}
	dir, err := os.MkdirTemp("", "gantry-bench-router-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	backendAddr, routerAddr, nginxAddr := ports[0], ports[1], ports[2]

	fmt.Printf("==> etcd (embedded) on %s\n", ports[3])
	ectx, cancel := context.WithTimeout(ctx, 60*time.Second)
	etcd, err := etcdserver.Start(ectx, etcdserver.Config{Dir: filepath.Join(dir, "etcd"), ClientAddr: ports[3], PeerAddr: ports[4], NoFsync: true})
	cancel()
	if err != nil {
		return err
	}
	defer etcd.Close()
	cli, err := etcd.Client()
	if err != nil {
		return err
	}
	defer cli.Close()

	fmt.Printf("==> backend on %s\n", backendAddr)
	backendPID, stopBackend, err := startChild(ctx, dir, "backend", self, "-role", "backend", "-listen", backendAddr)
	if err != nil {
		return err
	}
	defer stopBackend()
	if err := waitHTTP(ctx, backendAddr, "", "/"); err != nil {
		return fmt.Errorf("backend: %w", err)
	}

	fmt.Println("==> route and discovery entry into etcd (as the controller and a host agent write them)")
	if err := writeRoute(ctx, cli, backendAddr); err != nil {
		return err
	}

	routerArgs := []string{"-role", "router", "-listen", routerAddr, "-etcd", ports[3]}
	if bc.appLog {
		aggAddr := ports[5]
		fmt.Printf("==> log aggregator on %s (the router ships its app lines to it)\n", aggAddr)
		_, stopAgg, err := startChild(ctx, dir, "logaggregator", self, "-role", "logaggregator", "-listen", aggAddr, "-data", filepath.Join(dir, "logs"))
		if err != nil {
			return err
		}
		defer stopAgg()
		if err := waitHTTP(ctx, aggAddr, "", "/healthz"); err != nil {
			return fmt.Errorf("log aggregator: %w", err)
		}
		routerArgs = append(routerArgs, "-log-url", "http://"+aggAddr)
	}
	for flagName, file := range map[string]string{"-router-cpuprofile": bc.cpuProfile, "-router-memprofile": bc.memProfile} {
		if file == "" {
			continue
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return err
		}
		routerArgs = append(routerArgs, flagName, abs)
	}
	routerLog, nginxLog := filepath.Join(dir, "router-access.log"), filepath.Join(dir, "nginx-access.log")
	nginxLogDirective := "off"
	if bc.accessLog {
		routerArgs = append(routerArgs, "-access-file", routerLog)
		nginxLogDirective = nginxLog + " combined buffer=64k flush=1s"
	}
	fmt.Printf("==> router on %s\n", routerAddr)
	routerPID, stopRouter, err := startChild(ctx, dir, "router", self, routerArgs...)
	if err != nil {
		return err
	}
	defer stopRouter()
	if err := waitHTTP(ctx, routerAddr, domain, "/"); err != nil {
		return fmt.Errorf("router: %w", err)
	}

	fmt.Printf("==> nginx (%s, private instance in %s) on %s\n", nginxBin, dir, nginxAddr)
	conf, err := writeNginxConf(dir, nginxAddr, backendAddr, nginxLogDirective)
	if err != nil {
		return err
	}
	nginxPID, stopNginx, err := startChild(ctx, dir, "nginx", nginxBin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"))
	if err != nil {
		return err
	}
	defer stopNginx()
	if err := waitHTTP(ctx, nginxAddr, domain, "/"); err != nil {
		return fmt.Errorf("nginx: %w (see %s)", err, filepath.Join(dir, "nginx-error.log"))
	}

	targets := []target{{"direct", backendAddr, 0}, {"nginx", nginxAddr, nginxPID}, {"router", routerAddr, routerPID}}
	if bc.hold {
		fmt.Printf("==> holding until Ctrl-C (Host: %s)\n", domain)
		for _, tg := range append(targets[1:], target{"backend", backendAddr, backendPID}) {
			fmt.Printf("    %-7s http://%s/  pid %d\n", tg.name, tg.addr, tg.proxyPID)
		}
		<-ctx.Done()
		return nil
	}
	if bc.warmup > 0 {
		for _, tg := range targets {
			fmt.Printf("==> warm-up %v against %s\n", bc.warmup, tg.name)
			if _, err := runWrk(ctx, bc, tg.addr, bc.warmup); err != nil {
				return fmt.Errorf("warm up %s: %w", tg.name, err)
			}
		}
	}
	runs := map[string][]result{}
	for round := range bc.rounds {
		for i := range targets {
			tg := targets[(round+i)%len(targets)]
			res, err := measure(ctx, bc, tg, backendPID)
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			fmt.Printf("    round %d/%d %-6s %8.0f requests/s  p50 %-9v p99 %-9v errors: %s\n",
				round+1, bc.rounds, tg.name, res.rps, res.p50, res.p99, orNone(res.errors))
			runs[tg.name] = append(runs[tg.name], res)
		}
	}
	var results []result
	for _, tg := range targets {
		results = append(results, median(tg.name, runs[tg.name]))
	}
	printTable(os.Stdout, bc, results)
	if bc.accessLog {
		// Stop both proxies first, so that their buffered lines are out.
		stopRouter()
		stopNginx()
		fmt.Printf("access log lines: router %d, nginx %d\n", countLines(routerLog), countLines(nginxLog))
	}
	return nil
}

// target is one thing wrk is pointed at.
type target struct {
	name, addr string
	proxyPID   int // 0 for the backend alone
}

// measure runs wrk once against tg and adds the CPU time per request of
// the proxy and the backend.
func measure(ctx context.Context, bc benchConfig, tg target, backendPID int) (result, error) {
	proxy0, backend0 := treeCPU(tg.proxyPID), treeCPU(backendPID)
	res, err := runWrk(ctx, bc, tg.addr, bc.duration)
	if err != nil {
		return result{}, err
	}
	res.name = tg.name
	if n := res.rps * bc.duration.Seconds(); n > 0 {
		res.proxyCPU = time.Duration(float64(treeCPU(tg.proxyPID)-proxy0) / n)
		res.backendCPU = time.Duration(float64(treeCPU(backendPID)-backend0) / n)
	}
	return res, nil
}

// median returns the median of each figure of runs (each on its own) and
// the errors of all runs.
func median(name string, runs []result) result {
	out := result{name: name}
	pick := func(get func(result) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	out.rps = pick(func(r result) float64 { return r.rps })
	out.p50 = time.Duration(pick(func(r result) float64 { return float64(r.p50) }))
	out.p99 = time.Duration(pick(func(r result) float64 { return float64(r.p99) }))
	out.proxyCPU = time.Duration(pick(func(r result) float64 { return float64(r.proxyCPU) }))
	out.backendCPU = time.Duration(pick(func(r result) float64 { return float64(r.backendCPU) }))
	var errs []string
	for _, r := range runs {
		if r.errors != "" {
			errs = append(errs, r.errors)
		}
	}
	out.errors = strings.Join(errs, "; ")
	return out
}

// lookPath finds bin in PATH, then in dir (nginx lives in /usr/sbin, which
// is not in every user's PATH).
func lookPath(bin, dir string) (string, error) {
	p, err := exec.LookPath(bin)
	if err == nil || strings.ContainsRune(bin, '/') {
		return p, err
	}
	if p, err2 := exec.LookPath(filepath.Join(dir, bin)); err2 == nil {
		return p, nil
	}
	return "", err
}

// countLines returns the number of lines in file, or -1 when it cannot be
// read.
func countLines(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte("\n"))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// writeRoute writes the route and one discovery entry for the backend.
func writeRoute(ctx context.Context, cli *clientv3.Client, backendAddr string) error {
	space := keyspace.MustNew(cluster)
	val, err := json.Marshal(types.Route{Domain: domain, App: "bench", Service: service})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Put(wctx, space.Route(domain), string(val)); err != nil {
		return fmt.Errorf("write route: %w", err)
	}
	lease, err := cli.Grant(wctx, 3600)
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	disc := discovery.New(cli, space, 5*time.Second, nil)
	return disc.Register(wctx, lease.ID, service, discovery.Instance{ID: "web.1", Addr: backendAddr, Meta: map[string]string{"app": "bench"}})
}

// writeNginxConf writes an nginx configuration equivalent to the router's
// work: keep-alive upstream, Host kept, X-Forwarded-*, X-Request-Id and
// X-Request-Start set, one worker per core. Keep-alive connections, to the
// client and upstream, are not closed after nginx's default of 1000
// requests, as the router does not close them either.
func writeNginxConf(dir, listen, backend, accessLog string) (string, error) {
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "temp", d), 0o755); err != nil {
			return "", err
		}
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log %[2]s;
    keepalive_requests 1000000;
    client_body_temp_path %[1]s/temp/client_body;
    proxy_temp_path %[1]s/temp/proxy;
    fastcgi_temp_path %[1]s/temp/fastcgi;
    uwsgi_temp_path %[1]s/temp/uwsgi;
    scgi_temp_path %[1]s/temp/scgi;
    upstream backend {
        server %[3]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[4]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Request-Start "t=${msec}";
            add_header X-Request-Id $request_id;
        }
    }
}
`, dir, accessLog, backend, listen)
	file := filepath.Join(dir, "nginx.conf")
	return file, os.WriteFile(file, []byte(conf), 0o644)
}

// startChild starts a process whose output goes to a log file in dir, and
// returns its PID and a function that stops it (SIGTERM, then SIGKILL after
// 5 s), waits for it and shows its output; calls after the first do
// nothing. The process is also sent SIGTERM as soon as ctx is done.
func startChild(ctx context.Context, dir, name, bin string, args ...string) (int, func(), error) {
	logf, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the benchmark itself be killed, the kernel stops the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Env = os.Environ()
	if name == "router" && os.Getenv("BENCH_ROUTER_PROCS") != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+os.Getenv("BENCH_ROUTER_PROCS"))
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return 0, nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
		case <-done:
		}
	}()
	var once sync.Once
	return cmd.Process.Pid, func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			if out, err := os.ReadFile(logf.Name()); err == nil && len(strings.TrimSpace(string(out))) > 0 && name != "nginx" {
				fmt.Fprintf(os.Stderr, "--- %s output:\n%s", name, out)
			}
		})
	}, nil
}

// waitHTTP polls addr until a GET of path with host answers 200.
func waitHTTP(ctx context.Context, addr, host, path string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not answering 200 after 20s: %v", last)
}

var (
	rpsRE     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRE     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	errorsRE  = regexp.MustCompile(`(?m)^\s+(Socket errors:.*|Non-2xx or 3xx responses:.*)$`)
	unitScale = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}
)

// runWrk drives addr with wrk for d and parses its report.
func runWrk(ctx context.Context, bc benchConfig, addr string, d time.Duration) (result, error) {
	wctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(wctx, "wrk", "-t"+strconv.Itoa(bc.threads), "-c"+strconv.Itoa(bc.conns),
		"-d"+strconv.Itoa(secs)+"s", "--latency", "-H", "Host: "+domain, "http://"+addr+"/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	var res result
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	res.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, pm := range pctRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(pm[2]), 64)
		dur := time.Duration(math.Round(v*float64(unitScale[string(pm[3])])/1e3)) * time.Microsecond
		if string(pm[1]) == "50" {
			res.p50 = dur
		} else {
			res.p99 = dur
		}
	}
	var errs []string
	for _, em := range errorsRE.FindAllSubmatch(out, -1) {
		errs = append(errs, strings.TrimSpace(string(em[1])))
	}
	res.errors = strings.Join(errs, "; ")
	return res, nil
}

func printTable(w io.Writer, bc benchConfig, rs []result) {
	byName := map[string]result{}
	for _, r := range rs {
		byName[r.name] = r
	}
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\nRouter benchmark: %d CPUs (%s/%s, %s), wrk -t%d -c%d -d%v --latency, median of %d rounds, access log %s for router and nginx\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, host, bc.threads, bc.conns, bc.duration, bc.rounds, onOff(bc.accessLog))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\trequests/s\tp50\tp99\tproxy CPU/req\tbackend CPU/req\terrors\t")
	for _, r := range rs {
		proxyCPU := "-"
		if r.name != "direct" {
			proxyCPU = r.proxyCPU.Round(100 * time.Nanosecond).String()
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%s\t%v\t%s\t\n", r.name, r.rps, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond),
			proxyCPU, r.backendCPU.Round(100*time.Nanosecond), orNone(r.errors))
	}
	tw.Flush()
	rt, ng, di := byName["router"], byName["nginx"], byName["direct"]
	fmt.Fprintln(w)
	fmt.Fprintf(w, "router/nginx:  requests/s x%.2f  p50 x%.2f  p99 x%.2f\n", rt.rps/ng.rps, ratio(rt.p50, ng.p50), ratio(rt.p99, ng.p99))
	fmt.Fprintf(w, "router/direct: requests/s x%.2f  p50 x%.2f  p99 x%.2f\n", rt.rps/di.rps, ratio(rt.p50, di.p50), ratio(rt.p99, di.p99))
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func onOff(b bool) string {
	if b {
		return "on (buffered, to a file)"
	}
	return "off"
}

// freePorts returns n distinct free 127.0.0.1 ports.
func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// treeCPU returns the CPU time (user + system) used so far by pid and its
// child processes (nginx's workers), read from /proc; zero for pid 0.
func treeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which is in parentheses and may
		// hold spaces): state ppid ... utime(14) stime(15).
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if p != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on Linux.
const clockTicks = 100
