//go:build linux

// Command bench measures Gantry's router against nginx on this machine, in
// one run: a small Go backend; Gantry's router in front of it (route and
// discovery entry written into a real embedded etcd, the production path),
// once with its access log and once as `gantryd up` runs it (each
// request's line shipped to the app's log through a log aggregator in a
// process of its own, and no access log file), the latter also on HTTPS;
// nginx as a keep-alive reverse proxy in front of the same backend with
// its access log, on HTTP and on HTTPS with HTTP/2, with the same
// certificate as the router; and the backend alone. wrk drives HTTP/1.1
// (plain and TLS 1.3 with keep-alive), h2load HTTP/2, each target with the
// same settings. Each round measures, for each row (access log, app log,
// HTTPS, HTTP/2), the router and nginx back to back, which of the two
// first alternating and the rows in a rotating order, so that a burst of
// other load on the machine hits both sides of a row alike; it prints the
// 1-minute load average before and after, the median and the spread
// (min–max) of each target's figures, and for each row the router/nginx
// ratios of the rounds. The metrics row measures the access-log router
// next to the same router without its per-app metrics (router.Config
// NoAppMetrics), to show what they cost. Everything listens on 127.0.0.1
// and is stopped,
// and its temporary directory removed, at the end, also on an error or
// Ctrl-C.
//
//	go run ./router/bench [-duration 10s] [-rounds 5] [-rows access,app-log,https,h2,metrics] [-connections 64] [-threads 2]
//	    [-access-log=true] [-app-log-access-file] [-router-cpuprofile cpu.out] [-router-memprofile allocs.out] [-aggregator-cpuprofile agg.out]
//
// The same binary also runs the backend, the routers and the log
// aggregator as child processes (-role backend|router|logaggregator), so
// that each has its own Go runtime, as nginx has its own processes.
// BENCH_ROUTER_PROCS in the environment sets the router processes'
// GOMAXPROCS.
//
// It runs on Linux only (it reads /proc for the CPU time per request and
// the load average).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
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
	// domain is the route of the HTTP targets; tlsDomain, which resolves
	// to 127.0.0.1, that of the HTTPS ones, so that the clients send it as
	// the TLS server name and the router presents the route's certificate,
	// the one nginx has.
	domain    = "bench.test"
	tlsDomain = "localhost"
	service   = "bench-web"
	body      = "Hello from the benchmark backend.\n"
)

// The rows the benchmark can print, in order.
const (
	rowAccess = "access"
	rowAppLog = "app-log"
	rowHTTPS  = "https"
	rowH2     = "h2"
	// rowMetrics compares the access-log router with the same router
	// without its per-app metrics.
	rowMetrics = "metrics"
)

var allRows = []string{rowAccess, rowAppLog, rowHTTPS, rowH2, rowMetrics}

func main() {
	role := flag.String("role", "", "internal: run as the benchmark's backend, router or logaggregator process")
	listen := flag.String("listen", "", "internal: listen address of the backend, router or log aggregator")
	listenTLS := flag.String("listen-https", "", "internal: HTTPS listen address of the router")
	etcdURL := flag.String("etcd", "", "internal: etcd endpoint for the router")
	accessPath := flag.String("access-file", "", "internal: router access log file")
	logURL := flag.String("log-url", "", "internal: the log aggregator the router ships its app lines to")
	noAppMetrics := flag.Bool("no-app-metrics", false, "internal: the router keeps no per-app metrics")
	dataDir := flag.String("data", "", "internal: the log aggregator's data dir")
	cpuFile := flag.String("cpuprofile", "", "internal: the child's CPU profile")
	memFile := flag.String("memprofile", "", "internal: the child's allocation profile")
	duration := flag.Duration("duration", 10*time.Second, "load generator duration per target and round")
	rounds := flag.Int("rounds", 5, "rounds; each measures every row's router and nginx back to back")
	rows := flag.String("rows", strings.Join(allRows, ","), "comma-separated rows to measure: "+strings.Join(allRows, ", "))
	warmup := flag.Duration("warmup", 3*time.Second, "warm-up per target before the first round, not measured")
	conns := flag.Int("connections", 64, "connections of wrk and h2load")
	threads := flag.Int("threads", 2, "threads of wrk and h2load")
	accessLog := flag.Bool("access-log", true, "access log on for the access-log router and nginx (buffered, to a file); false turns it off for both")
	appAccessLog := flag.Bool("app-log-access-file", false, "the router as gantryd up runs it also writes an access log file, as gantryd up --access-log FILE does (by default its lines go to the apps' log only)")
	cpuProfile := flag.String("router-cpuprofile", "", "write a CPU profile of the router as gantryd up runs it (of the access-log router when only that row runs) to this file")
	memProfile := flag.String("router-memprofile", "", "write an allocation profile of that router to this file")
	aggProfile := flag.String("aggregator-cpuprofile", "", "write a CPU profile of the log aggregator to this file")
	nginxBin := flag.String("nginx", "nginx", "nginx binary (looked up in PATH, then /usr/sbin)")
	hold := flag.Bool("hold", false, "start the targets, print their addresses and wait for Ctrl-C instead of measuring (to drive or profile them by hand)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "backend":
		err = runBackend(ctx, *listen)
	case "router":
		err = runRouter(ctx, *listen, *listenTLS, *etcdURL, *accessPath, *logURL, *cpuFile, *memFile, *noAppMetrics)
	case "logaggregator":
		err = runAggregator(ctx, *listen, *dataDir, *cpuFile)
	case "":
		var sel []string
		sel, err = parseRows(*rows)
		if err == nil {
			err = orchestrate(ctx, benchConfig{duration: *duration, rounds: *rounds, warmup: *warmup, conns: *conns, threads: *threads,
				rows: sel, accessLog: *accessLog, appAccessLog: *appAccessLog, cpuProfile: *cpuProfile, memProfile: *memProfile, aggProfile: *aggProfile,
				nginx: *nginxBin, hold: *hold})
		}
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

// parseRows reads the -rows flag.
func parseRows(s string) ([]string, error) {
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		r = strings.TrimSpace(r)
		if !slices.Contains(allRows, r) {
			return nil, fmt.Errorf("-rows: unknown row %q; want some of %s", r, strings.Join(allRows, ","))
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
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

// startCPUProfile starts a CPU profile into file, when file is set, and
// returns the function that stops it.
func startCPUProfile(file string) (func(), error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// runRouter runs Gantry's router against the benchmark's etcd. The CPU
// profile covers the router's whole life (it is idle while the other
// targets are measured); the allocation profile is written at the end.
func runRouter(ctx context.Context, addr, tlsAddr, endpoint, accessPath, logURL, cpuProfile, memProfile string, noAppMetrics bool) error {
	if memProfile != "" {
		defer writeAllocs(memProfile)
	}
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	cfg := router.Config{
		Cluster:       cluster,
		Etcd:          cli,
		HTTPAddr:      addr,
		HTTPSAddr:     tlsAddr,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ShutdownDelay: -1,
		ShutdownGrace: 2 * time.Second,
		NoAppMetrics:  noAppMetrics,
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
func runAggregator(ctx context.Context, addr, dir, cpuProfile string) error {
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
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
	duration, warmup                   time.Duration
	rounds, conns, threads             int
	rows                               []string
	accessLog, appAccessLog            bool
	cpuProfile, memProfile, aggProfile string
	nginx                              string
	hold                               bool
}

func (bc benchConfig) has(row string) bool { return slices.Contains(bc.rows, row) }

// target is one thing a load generator is pointed at.
type target struct {
	name string
	// url is what the load generator requests; host its Host header.
	url, host string
	// h2 selects h2load (HTTP/2) instead of wrk (HTTP/1.1).
	h2 bool
	// proxyPIDs are the processes whose CPU time is the proxy's (with
	// their children); none for the backend alone. aggPID, when not 0, is
	// the log aggregator's, which is also counted apart.
	proxyPIDs []int
	aggPID    int
}

// result is one measurement of a target.
type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   string
	// proxyCPU, aggCPU and backendCPU are the CPU time (user + system)
	// per request of the proxy (all its processes, the aggregator
	// included), of the log aggregator alone and of the backend.
	proxyCPU, aggCPU, backendCPU time.Duration
}

// row is one line of the comparison: a router target against an nginx
// target.
type row struct {
	name, router, nginx string
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
	needTLS := bc.has(rowHTTPS) || bc.has(rowH2)
	if _, err := exec.LookPath("h2load"); err != nil && bc.has(rowH2) {
		return fmt.Errorf("h2load not found (%w): run `make bench-router`, which installs it (Debian package nghttp2-client)", err)
	}
	fmt.Printf("==> load average before the run (1, 5, 15 min): %s\n", loadAvg())
	dir, err := os.MkdirTemp("", "gantry-bench-router-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports, err := freePorts(11)
	if err != nil {
		return err
	}
	backendAddr, routerAddr, appRouterAddr, appRouterTLS, nginxAddr, nginxTLS, aggAddr := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	tlsPort := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return tlsDomain + ":" + p }

	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM, keyPEM, err := writeCert(certFile, keyFile)
	if err != nil {
		return err
	}

	fmt.Printf("==> etcd (embedded) on %s\n", ports[7])
	ectx, cancel := context.WithTimeout(ctx, 60*time.Second)
	etcd, err := etcdserver.Start(ectx, etcdserver.Config{Dir: filepath.Join(dir, "etcd"), ClientAddr: ports[7], PeerAddr: ports[8], NoFsync: true})
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
	if err := waitHTTP(ctx, "http://"+backendAddr+"/", ""); err != nil {
		return fmt.Errorf("backend: %w", err)
	}

	fmt.Printf("==> routes %s and %s (with the benchmark's certificate) and the discovery entry into etcd\n", domain, tlsDomain)
	if err := writeRoutes(ctx, cli, backendAddr, certPEM, keyPEM); err != nil {
		return err
	}

	// The router as gantryd up runs it serves the app-log, HTTPS and
	// HTTP/2 rows; the profiles are of it when it runs.
	appRouter := bc.has(rowAppLog) || needTLS
	profiled := "router"
	if appRouter {
		profiled = "router-app"
	}
	profileArgs := func(name string) ([]string, error) {
		var args []string
		if name != profiled {
			return nil, nil
		}
		for flagName, file := range map[string]string{"-cpuprofile": bc.cpuProfile, "-memprofile": bc.memProfile} {
			if file == "" {
				continue
			}
			abs, err := filepath.Abs(file)
			if err != nil {
				return nil, err
			}
			args = append(args, flagName, abs)
		}
		return args, nil
	}
	nginxLog := filepath.Join(dir, "nginx-access.log")
	nginxLogDirective := "off"
	if bc.accessLog {
		nginxLogDirective = nginxLog + " combined buffer=64k flush=1s"
	}
	var logs []string // access log files, counted at the end
	var stops []func()
	// startRouter starts a router process and waits until it routes.
	startRouter := func(name, addr, tlsAddr, logURL string, accessLog bool, extra ...string) (int, error) {
		args := append([]string{"-role", "router", "-listen", addr, "-etcd", ports[7]}, extra...)
		if tlsAddr != "" {
			args = append(args, "-listen-https", tlsAddr)
		}
		if logURL != "" {
			args = append(args, "-log-url", logURL)
		}
		if accessLog {
			file := filepath.Join(dir, name+"-access.log")
			args = append(args, "-access-file", file)
			logs = append(logs, file)
		}
		pa, err := profileArgs(name)
		if err != nil {
			return 0, err
		}
		args = append(args, pa...)
		fmt.Printf("==> %s on %s %s\n", name, addr, tlsAddr)
		pid, stop, err := startChild(ctx, dir, name, self, args...)
		if err != nil {
			return 0, err
		}
		stops = append(stops, stop)
		if err := waitHTTP(ctx, "http://"+addr+"/", domain); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if tlsAddr != "" {
			if err := waitHTTP(ctx, "https://"+tlsPort(tlsAddr)+"/", ""); err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
		}
		return pid, nil
	}
	stopAgg := func() {}
	defer func() {
		for _, stop := range stops {
			stop()
		}
		stopAgg() // after the router, so that its last lines are shipped
	}()

	var targets []target
	var rows []row
	add := func(t target) { targets = append(targets, t) }
	if bc.has(rowAccess) {
		add(target{name: "direct", url: "http://" + backendAddr + "/", host: domain})
	}

	fmt.Printf("==> nginx (%s, private instance in %s) on %s, HTTPS and HTTP/2 on %s\n", nginxBin, dir, nginxAddr, nginxTLS)
	conf, err := writeNginxConf(dir, nginxAddr, nginxTLS, certFile, keyFile, backendAddr, nginxLogDirective)
	if err != nil {
		return err
	}
	nginxPID, stopNginx, err := startChild(ctx, dir, "nginx", nginxBin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "nginx-error.log"))
	if err != nil {
		return err
	}
	stops = append(stops, stopNginx)
	if err := waitHTTP(ctx, "http://"+nginxAddr+"/", domain); err != nil {
		return fmt.Errorf("nginx: %w (see %s)", err, filepath.Join(dir, "nginx-error.log"))
	}
	if err := waitHTTP(ctx, "https://"+tlsPort(nginxTLS)+"/", ""); err != nil {
		return fmt.Errorf("nginx HTTPS: %w (see %s)", err, filepath.Join(dir, "nginx-error.log"))
	}
	if bc.accessLog {
		logs = append(logs, nginxLog)
	}
	if bc.has(rowAccess) || bc.has(rowAppLog) {
		add(target{name: "nginx", url: "http://" + nginxAddr + "/", host: domain, proxyPIDs: []int{nginxPID}})
	}

	if bc.has(rowAccess) || bc.has(rowMetrics) {
		pid, err := startRouter("router", routerAddr, "", "", bc.accessLog)
		if err != nil {
			return err
		}
		add(target{name: "router", url: "http://" + routerAddr + "/", host: domain, proxyPIDs: []int{pid}})
	}
	if bc.has(rowAccess) {
		rows = append(rows, row{"access log", "router", "nginx"})
	}
	if bc.has(rowMetrics) {
		addr := ports[10]
		pid, err := startRouter("router-nometrics", addr, "", "", bc.accessLog, "-no-app-metrics")
		if err != nil {
			return err
		}
		add(target{name: "router, no metrics", url: "http://" + addr + "/", host: domain, proxyPIDs: []int{pid}})
		rows = append(rows, row{"per-app metrics (router / router without them)", "router", "router, no metrics"})
	}
	if appRouter {
		fmt.Printf("==> log aggregator on %s (the router as gantryd up runs it ships its app lines to it)\n", aggAddr)
		aggArgs := []string{"-role", "logaggregator", "-listen", aggAddr, "-data", filepath.Join(dir, "logs")}
		if bc.aggProfile != "" {
			abs, err := filepath.Abs(bc.aggProfile)
			if err != nil {
				return err
			}
			aggArgs = append(aggArgs, "-cpuprofile", abs)
		}
		aggPID, stop, err := startChild(ctx, dir, "logaggregator", self, aggArgs...)
		if err != nil {
			return err
		}
		stopAgg = stop
		if err := waitHTTP(ctx, "http://"+aggAddr+"/healthz", ""); err != nil {
			return fmt.Errorf("log aggregator: %w", err)
		}
		pid, err := startRouter("router-app", appRouterAddr, appRouterTLS, "http://"+aggAddr, bc.appAccessLog)
		if err != nil {
			return err
		}
		pids := []int{pid, aggPID}
		if bc.has(rowAppLog) {
			add(target{name: "router+applog", url: "http://" + appRouterAddr + "/", host: domain, proxyPIDs: pids, aggPID: aggPID})
			rows = append(rows, row{"app log", "router+applog", "nginx"})
		}
		if bc.has(rowHTTPS) {
			add(target{name: "nginx https", url: "https://" + tlsPort(nginxTLS) + "/", proxyPIDs: []int{nginxPID}})
			add(target{name: "router https", url: "https://" + tlsPort(appRouterTLS) + "/", proxyPIDs: pids, aggPID: aggPID})
			rows = append(rows, row{"HTTPS", "router https", "nginx https"})
		}
		if bc.has(rowH2) {
			add(target{name: "nginx h2", url: "https://" + tlsPort(nginxTLS) + "/", h2: true, proxyPIDs: []int{nginxPID}})
			add(target{name: "router h2", url: "https://" + tlsPort(appRouterTLS) + "/", h2: true, proxyPIDs: pids, aggPID: aggPID})
			rows = append(rows, row{"HTTP/2", "router h2", "nginx h2"})
		}
	}

	if bc.hold {
		fmt.Printf("==> holding until Ctrl-C (Host: %s on HTTP, %s on HTTPS); backend pid %d\n", domain, tlsDomain, backendPID)
		for _, tg := range targets {
			fmt.Printf("    %-14s %s  pids %v\n", tg.name, tg.url, tg.proxyPIDs)
		}
		<-ctx.Done()
		return nil
	}
	if bc.warmup > 0 {
		for _, tg := range targets {
			fmt.Printf("==> warm-up %v against %s\n", bc.warmup, tg.name)
			if _, err := runLoad(ctx, bc, dir, tg, bc.warmup); err != nil {
				return fmt.Errorf("warm up %s: %w", tg.name, err)
			}
		}
	}
	// Each round measures the backend alone, then each row's router and
	// nginx back to back (the first of the two alternating from round to
	// round, the rows in a rotating order), so that the ratio of a row in
	// a round compares two runs a few seconds apart. nginx on HTTP is
	// measured once for each of the two rows it is in.
	byName := map[string]target{}
	for _, tg := range targets {
		byName[tg.name] = tg
	}
	runs := map[string][]result{}     // by target
	pairs := map[string][][2]result{} // by row: router, nginx
	run := func(round int, tg target) (result, error) {
		res, err := measure(ctx, bc, dir, tg, backendPID)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", tg.name, err)
		}
		fmt.Printf("    round %d/%d %-14s %8.0f requests/s  p50 %-9v p99 %-9v errors: %s\n",
			round+1, bc.rounds, tg.name, res.rps, res.p50, res.p99, orNone(res.errors))
		runs[tg.name] = append(runs[tg.name], res)
		return res, nil
	}
	for round := range bc.rounds {
		if tg, ok := byName["direct"]; ok {
			if _, err := run(round, tg); err != nil {
				return err
			}
		}
		for i := range rows {
			r := rows[(round+i)%len(rows)]
			var pair [2]result
			for k := range 2 {
				side := (k + round) % 2 // 0 router, 1 nginx
				name := r.router
				if side == 1 {
					name = r.nginx
				}
				res, err := run(round, byName[name])
				if err != nil {
					return err
				}
				pair[side] = res
			}
			pairs[r.name] = append(pairs[r.name], pair)
		}
	}
	load := loadAvg()
	printTable(os.Stdout, bc, targets, rows, runs, pairs)
	fmt.Printf("\nload average after the run (1, 5, 15 min): %s\n", load)
	if bc.accessLog {
		// Stop the proxies first, so that their buffered lines are out.
		for _, stop := range stops {
			stop()
		}
		var counts []string
		for _, file := range logs {
			counts = append(counts, fmt.Sprintf("%s %d", strings.TrimSuffix(filepath.Base(file), "-access.log"), countLines(file)))
		}
		fmt.Printf("access log lines: %s\n", strings.Join(counts, ", "))
	}
	return nil
}

// loadAvg returns the 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// measure runs the load generator once against tg and adds the CPU time
// per request of the proxy, the aggregator and the backend.
func measure(ctx context.Context, bc benchConfig, dir string, tg target, backendPID int) (result, error) {
	proxy0, agg0, backend0 := treeCPU(tg.proxyPIDs...), treeCPU(tg.aggPID), treeCPU(backendPID)
	res, err := runLoad(ctx, bc, dir, tg, bc.duration)
	if err != nil {
		return result{}, err
	}
	if n := res.rps * bc.duration.Seconds(); n > 0 {
		res.proxyCPU = time.Duration(float64(treeCPU(tg.proxyPIDs...)-proxy0) / n)
		res.aggCPU = time.Duration(float64(treeCPU(tg.aggPID)-agg0) / n)
		res.backendCPU = time.Duration(float64(treeCPU(backendPID)-backend0) / n)
	}
	return res, nil
}

// spread is the median, minimum and maximum of some figures.
type spread struct{ med, lo, hi float64 }

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if n := len(v); n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return spread{med, v[0], v[len(v)-1]}
}

func figures(runs []result, get func(result) float64) spread {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = get(r)
	}
	return spreadOf(v)
}

var (
	rpsRE     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRE     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	errorsRE  = regexp.MustCompile(`(?m)^\s+(Socket errors:.*|Non-2xx or 3xx responses:.*)$`)
	unitScale = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}
	// h2load's summary: "finished in 10.00s, 31234.50 req/s, 3.51MB/s"
	// and "requests: 312345 total, 312409 started, 312345 done, 312345
	// succeeded, 0 failed, 0 errored, 0 timeout".
	h2rpsRE  = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2reqsRE = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2codeRE = regexp.MustCompile(`status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// runLoad drives tg for d with wrk or h2load and parses the report.
func runLoad(ctx context.Context, bc benchConfig, dir string, tg target, d time.Duration) (result, error) {
	wctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	if tg.h2 {
		return runH2load(wctx, bc, dir, tg, secs)
	}
	args := []string{"-t" + strconv.Itoa(bc.threads), "-c" + strconv.Itoa(bc.conns), "-d" + secs + "s", "--latency"}
	if tg.host != "" {
		args = append(args, "-H", "Host: "+tg.host)
	}
	out, err := exec.CommandContext(wctx, "wrk", append(args, tg.url)...).CombinedOutput()
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

// runH2load drives tg over HTTP/2 with h2load: -c connections, one stream
// in flight on each (as wrk has one request in flight per connection), for
// secs seconds. h2load prints no percentiles, so p50 and p99 come from its
// per-request log.
func runH2load(ctx context.Context, bc benchConfig, dir string, tg target, secs string) (result, error) {
	logFile := filepath.Join(dir, "h2load.log")
	defer os.Remove(logFile)
	out, err := exec.CommandContext(ctx, "h2load", "-t", strconv.Itoa(bc.threads), "-c", strconv.Itoa(bc.conns), "-m", "1",
		"-D", secs, "--log-file", logFile, tg.url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("h2load: %w\n%s", err, out)
	}
	var res result
	m := h2rpsRE.FindSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("no req/s in h2load output:\n%s", out)
	}
	res.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	var errs []string
	if m := h2reqsRE.FindSubmatch(out); m != nil && (string(m[1]) != "0" || string(m[2]) != "0" || string(m[3]) != "0") {
		errs = append(errs, fmt.Sprintf("failed %s, errored %s, timeout %s", m[1], m[2], m[3]))
	}
	if m := h2codeRE.FindSubmatch(out); m != nil && (string(m[1]) != "0" || string(m[2]) != "0" || string(m[3]) != "0") {
		errs = append(errs, fmt.Sprintf("non-2xx: 3xx %s, 4xx %s, 5xx %s", m[1], m[2], m[3]))
	}
	res.errors = strings.Join(errs, "; ")
	res.p50, res.p99, err = logPercentiles(logFile)
	return res, err
}

// logPercentiles reads h2load's per-request log (start time, status,
// microseconds until the response ended; tab-separated) and returns the
// 50th and 99th percentiles of the durations.
func logPercentiles(file string) (p50, p99 time.Duration, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var us []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 3 {
			continue
		}
		v, err := strconv.ParseInt(fields[2], 10, 64)
		if err == nil {
			us = append(us, v)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("h2load log: %w", err)
	}
	if len(us) == 0 {
		return 0, 0, errors.New("h2load log: no requests")
	}
	slices.Sort(us)
	at := func(q float64) time.Duration {
		return time.Duration(us[min(len(us)-1, int(math.Ceil(q*float64(len(us))))-1)]) * time.Microsecond
	}
	return at(0.50), at(0.99), nil
}

func printTable(w io.Writer, bc benchConfig, targets []target, rows []row, runs map[string][]result, pairs map[string][][2]result) {
	host, _ := os.Hostname()
	appFile := " only, as under gantryd up"
	if bc.appAccessLog {
		appFile = " and writes an access log file"
	}
	fmt.Fprintf(w, "\nRouter benchmark: %d CPUs (%s/%s, %s); %d rounds of %v per target; wrk -t%d -c%d --latency (HTTP/1.1), h2load -t%d -c%d -m1 (HTTP/2);\n"+
		"access log %s for router and nginx; router+applog (and its HTTPS) ships each request's line to the apps' log%s. Figures: median [min-max] over the rounds.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, host, bc.rounds, bc.duration, bc.threads, bc.conns, bc.threads, bc.conns, onOff(bc.accessLog), appFile)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\trequests/s\tp50\tp99\tproxy CPU/req\tof which aggregator\tbackend CPU/req\terrors")
	us := func(s spread) string {
		return fmt.Sprintf("%.2fms [%.2f-%.2f]", s.med/1e6, s.lo/1e6, s.hi/1e6)
	}
	for _, tg := range targets {
		rs := runs[tg.name]
		rps := figures(rs, func(r result) float64 { return r.rps })
		proxyCPU, aggCPU := "-", "-"
		if len(tg.proxyPIDs) > 0 {
			proxyCPU = time.Duration(figures(rs, func(r result) float64 { return float64(r.proxyCPU) }).med).Round(100 * time.Nanosecond).String()
		}
		if tg.aggPID != 0 {
			aggCPU = time.Duration(figures(rs, func(r result) float64 { return float64(r.aggCPU) }).med).Round(100 * time.Nanosecond).String()
		}
		var errs []string
		for _, r := range rs {
			if r.errors != "" {
				errs = append(errs, r.errors)
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f [%.0f-%.0f]\t%s\t%s\t%s\t%s\t%v\t%s\n", tg.name, rps.med, rps.lo, rps.hi,
			us(figures(rs, func(r result) float64 { return float64(r.p50) })), us(figures(rs, func(r result) float64 { return float64(r.p99) })),
			proxyCPU, aggCPU, time.Duration(figures(rs, func(r result) float64 { return float64(r.backendCPU) }).med).Round(100*time.Nanosecond),
			orNone(strings.Join(errs, "; ")))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nfirst/second target of each row (router/nginx; for the metrics row, router/router without metrics), round by round (each round measures a row's two targets back to back): median [min-max]\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "row\tfirst\tsecond\trequests/s\tp50\tp99\tproxy CPU/req")
	for _, r := range rows {
		ratio := func(get func(result) float64) string {
			var v []float64
			for _, p := range pairs[r.name] {
				if d := get(p[1]); d > 0 {
					v = append(v, get(p[0])/d)
				}
			}
			s := spreadOf(v)
			return fmt.Sprintf("x%.2f [%.2f-%.2f]", s.med, s.lo, s.hi)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.router, r.nginx,
			ratio(func(r result) float64 { return r.rps }), ratio(func(r result) float64 { return float64(r.p50) }),
			ratio(func(r result) float64 { return float64(r.p99) }), ratio(func(r result) float64 { return float64(r.proxyCPU) }))
	}
	tw.Flush()
}

func onOff(b bool) string {
	if b {
		return "on (buffered, to a file)"
	}
	return "off"
}

// writeCert writes a self-signed ECDSA P-256 certificate for tlsDomain
// and 127.0.0.1, and its key, as PEM files, and returns both PEMs.
func writeCert(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: tlsDomain},
		DNSNames:              []string{tlsDomain},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("benchmark certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("benchmark certificate key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, os.WriteFile(keyFile, keyPEM, 0o600)
}

// writeRoutes writes the routes (domain, and tlsDomain with the
// certificate) and one discovery entry for the backend.
func writeRoutes(ctx context.Context, cli *clientv3.Client, backendAddr string, certPEM, keyPEM []byte) error {
	space := keyspace.MustNew(cluster)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, rt := range []types.Route{
		{Domain: domain, App: "bench", Service: service},
		{Domain: tlsDomain, App: "bench", Service: service, TLSCert: string(certPEM), TLSKey: string(keyPEM)},
	} {
		val, err := json.Marshal(rt)
		if err != nil {
			return err
		}
		if _, err := cli.Put(wctx, space.Route(rt.Domain), string(val)); err != nil {
			return fmt.Errorf("write route %s: %w", rt.Domain, err)
		}
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
// X-Request-Start set, one worker per core; HTTP on listen, and HTTPS
// with HTTP/2 on listenTLS with the benchmark's certificate, TLS 1.3 only,
// AES-128-GCM first as Go's TLS picks it on this hardware. Keep-alive
// connections, to the client and upstream, are not closed after nginx's
// default of 1000 requests, as the router does not close them either.
func writeNginxConf(dir, listen, listenTLS, cert, key, backend, accessLog string) (string, error) {
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
        listen %[5]s ssl http2;
        ssl_certificate %[6]s;
        ssl_certificate_key %[7]s;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
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
`, dir, accessLog, backend, listen, listenTLS, cert, key)
	file := filepath.Join(dir, "nginx.conf")
	return file, os.WriteFile(file, []byte(conf), 0o644)
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
	if strings.HasPrefix(name, "router") && os.Getenv("BENCH_ROUTER_PROCS") != "" {
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

// waitHTTP polls url until a GET with host (when set) answers 200. HTTPS
// certificates are not checked.
func waitHTTP(ctx context.Context, url, host string) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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
	return fmt.Errorf("%s not answering 200 after 20s: %v", url, last)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
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

// treeCPU returns the CPU time (user + system) used so far by pids and
// their child processes (nginx's workers), read from /proc; pid 0 is
// none.
func treeCPU(pids ...int) time.Duration {
	pids = slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return p == 0 })
	if len(pids) == 0 {
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
		if !slices.Contains(pids, p) && !slices.Contains(pids, ppid) {
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
