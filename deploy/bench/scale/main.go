// Command scale measures how long `gantry scale web=N` takes from zero until
// all N instances are registered healthy, next to starting N containers of
// the same image with plain `docker run` until each answers HTTP, in one run
// on this machine. `make bench-scale` runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 20, "instances to start")
	runs := flag.Int("runs", 3, "measured runs of each")
	bin := flag.String("bin", "bin", "directory holding gantryd and gantry")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *runs, *bin); err != nil {
		fmt.Fprintf(os.Stderr, "bench-scale: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, runs int, bin string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gantry-bench-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	image := "gantry-bench/httpserver:latest"
	fmt.Println("==> Building the test image (a static Go HTTP server FROM scratch)")
	if err := buildImage(ctx, work, image); err != nil {
		return err
	}
	defer sh(context.Background(), "docker", "rmi", "-f", image)

	fmt.Println("==> Starting gantryd up on free ports")
	p, err := startPlatform(ctx, bin, work)
	if err != nil {
		return err
	}
	defer p.stop()

	if _, err := p.gantry(ctx, "create", "bench"); err != nil {
		return err
	}
	if _, err := p.gantry(ctx, "release", "create", "-a", "bench", "--image", image, "--process", "web=serve", "--health", "web=/healthz"); err != nil {
		return err
	}
	var gantryTimes, dockerTimes []time.Duration
	for i := range runs {
		if _, err := p.gantry(ctx, "scale", "-a", "bench", "web=0"); err != nil {
			return err
		}
		start := time.Now()
		if _, err := p.gantry(ctx, "scale", "-a", "bench", fmt.Sprintf("web=%d", n)); err != nil {
			return err
		}
		gantryTimes = append(gantryTimes, time.Since(start))
		fmt.Printf("    run %d: gantry scale web=%d: %s\n", i+1, n, gantryTimes[i].Round(time.Millisecond))

		d, err := dockerRun(ctx, image, n)
		if err != nil {
			return err
		}
		dockerTimes = append(dockerTimes, d)
		fmt.Printf("    run %d: docker run x%d:     %s\n", i+1, n, d.Round(time.Millisecond))
	}
	if _, err := p.gantry(ctx, "scale", "-a", "bench", "web=0"); err != nil {
		return err
	}
	g, d := median(gantryTimes), median(dockerTimes)
	fmt.Printf("\n%-34s %10s\n", fmt.Sprintf("start %d instances until healthy", n), "median")
	fmt.Printf("%-34s %10s\n", "gantry scale web="+fmt.Sprint(n), g.Round(time.Millisecond))
	fmt.Printf("%-34s %10s\n", "plain docker run (in parallel)", d.Round(time.Millisecond))
	fmt.Printf("%-34s %10.2fx\n", "ratio gantry / docker run", float64(g)/float64(d))
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// dockerRun starts n containers of image with plain `docker run -d` (in
// parallel), waits until each answers GET /healthz on its published port,
// and removes them. It returns the time until the last one answered.
func dockerRun(ctx context.Context, image string, n int) (time.Duration, error) {
	label := fmt.Sprintf("gantry-bench=%d", time.Now().UnixNano())
	defer func() {
		out, _ := sh(context.Background(), "docker", "ps", "-aq", "--filter", "label="+label)
		if ids := strings.Fields(out); len(ids) > 0 {
			sh(context.Background(), "docker", append([]string{"rm", "-f"}, ids...)...)
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := sh(ctx, "docker", "run", "-d", "--label", label, "-e", "PORT=8080", "-p", "127.0.0.1::8080", "--memory", "512m", image)
			if err != nil {
				errs <- err
				return
			}
			port, err := sh(ctx, "docker", "port", strings.TrimSpace(id), "8080/tcp")
			if err != nil {
				errs <- err
				return
			}
			addr := strings.TrimSpace(strings.Split(port, "\n")[0])
			errs <- waitHTTP(ctx, "http://"+addr+"/healthz")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func waitHTTP(ctx context.Context, url string) error {
	client := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within a minute", url)
}

func buildImage(ctx context.Context, work, image string) error {
	dir := filepath.Join(work, "image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "app"), "./layer0/host/testdata/httpserver")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"), 0o644); err != nil {
		return err
	}
	_, err := sh(ctx, "docker", "build", "-q", "-t", image, dir)
	return err
}

type platform struct {
	cmd  *exec.Cmd
	env  []string
	bin  string
	done chan error
}

func startPlatform(ctx context.Context, bin, work string) (*platform, error) {
	data := filepath.Join(work, "data")
	api := freeAddr()
	args := []string{"up", "--in-process", "--data", data, "--api-addr", api, "--http-addr", freeAddr(), "--https-addr", freeAddr(),
		"--ssh-addr", freeAddr(), "--host-api-addr", freeAddr(), "--etcd-client-addr", freeAddr(), "--etcd-peer-addr", freeAddr()}
	cmd := exec.Command(filepath.Join(bin, "gantryd"), args...)
	logFile, err := os.Create(filepath.Join(work, "gantryd.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gantryd: %w", err)
	}
	p := &platform{cmd: cmd, bin: bin, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	if err := waitHTTP(ctx, "http://"+api+"/healthz"); err != nil {
		p.stop()
		log, _ := os.ReadFile(logFile.Name())
		return nil, fmt.Errorf("gantryd did not come up: %w\n%s", err, log)
	}
	env, err := os.ReadFile(filepath.Join(data, "admin.env"))
	if err != nil {
		p.stop()
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		if sc.Text() != "" {
			p.env = append(p.env, sc.Text())
		}
	}
	p.env = append(p.env, "GANTRY_CONFIG="+filepath.Join(work, "cli.json"))
	return p, nil
}

func (p *platform) gantry(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "gantry"), args...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gantry %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (p *platform) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func sh(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
