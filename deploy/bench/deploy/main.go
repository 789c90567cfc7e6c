// Command deploy measures push-to-live: the time from the start of `git
// push gantry main` of the Go test app (slugbuilder/testdata/apps/go-web)
// until the router serves the new content, cold (first push, empty build
// cache) and warm (a one-line change). In the same run it builds and runs
// the same app with a plain multi-stage `docker build` (Dockerfile.goweb)
// plus `docker run` until it answers, cold (--no-cache) and warm (the layer
// cache). It prints both side by side, and where the warm pushes' time
// goes, read from the push output and the gantryd log. `make bench-deploy`
// runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/deploy/stack"
)

// appDir is the test app, relative to the repository root.
const appDir = "slugbuilder/testdata/apps/go-web"

// servedLine is the format string of the app's page in main.go; each warm
// run rewrites it into a new one-line change.
const servedLine = `"hello from goweb %s\n"`

// liveTimeout bounds one push or one Dockerfile build and run until the new
// content is served.
const liveTimeout = 15 * time.Minute

func main() {
	runs := flag.Int("runs", 3, "warm runs of each side (the table shows their median)")
	bin := flag.String("bin", "bin", "directory holding gantryd and gantry")
	logs := flag.String("logs", "", "copy the gantryd log, push outputs and docker build outputs into this directory")
	timeline := flag.Bool("timeline", false, "also print the last warm push's timeline, line by line")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *runs, *bin, *logs, *timeline); err != nil {
		fmt.Fprintf(os.Stderr, "bench-deploy: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, runs int, bin, logs string, timeline bool) (err error) {
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "docker", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required: %w", tool, err)
		}
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		return err
	}
	builder, runImage := stack.BuilderRef(stack.DefaultVersion), stack.StackRef(stack.DefaultVersion)
	for _, ref := range []string{builder, runImage} {
		if _, err := sh(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ref); err != nil {
			return fmt.Errorf("the image %s is missing: run `bin/gantryd stack build`: %w", ref, err)
		}
	}
	goproxy, err := sh(ctx, "go", "env", "GOPROXY")
	if err != nil {
		return err
	}
	goproxy = strings.TrimSpace(goproxy)
	src, err := filepath.Abs(appDir)
	if err != nil {
		return err
	}
	goVersion, err := toolchainVersion(filepath.Join(src, "go.mod"))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gantry-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if logs != "" {
		defer func() {
			if cerr := copyLogs(work, logs); cerr != nil {
				fmt.Fprintf(os.Stderr, "bench-deploy: copy logs: %v\n", cerr)
			}
		}()
	}
	fmt.Printf("==> Go test app %s, toolchain go%s, load average %s\n", appDir, goVersion, loadAvg())

	res := results{}
	if err := benchPush(ctx, work, bin, src, runs, &res); err != nil {
		return err
	}
	if err := benchDocker(ctx, work, src, dockerArgs{
		builder: builder, runImage: runImage, goproxy: goproxy, goVersion: goVersion,
	}, runs, &res); err != nil {
		return err
	}
	res.print(os.Stdout, timeline)
	fmt.Printf("\nload average at the end: %s\n", loadAvg())
	return nil
}

// results holds the measured times of each side.
type results struct {
	pushCold, dockerCold time.Duration
	pushWarm, dockerWarm []time.Duration
	// timelines are the warm pushes', for the breakdown.
	timelines [][]event
}

func (r *results) print(w io.Writer, fullTimeline bool) {
	pw, dw := median(r.pushWarm), median(r.dockerWarm)
	fmt.Fprintf(w, "\n%-42s %12s %14s\n", "until the new content is served", "cold", "warm (median)")
	fmt.Fprintf(w, "%-42s %12s %14s\n", "git push (push-to-live, via the router)", round(r.pushCold), round(pw))
	fmt.Fprintf(w, "%-42s %12s %14s\n", "docker build + docker run", round(r.dockerCold), round(dw))
	fmt.Fprintf(w, "%-42s %11.2fx %13.2fx\n", "ratio git push / docker", float64(r.pushCold)/float64(r.dockerCold), float64(pw)/float64(dw))
	fmt.Fprintf(w, "\nwarm runs: git push %s; docker %s\n", list(r.pushWarm), list(r.dockerWarm))

	fmt.Fprintf(w, "\nWhere the warm pushes' time goes (from the push output and the gantryd log):\n")
	fmt.Fprintf(w, "%-62s", "phase")
	for i := range r.timelines {
		fmt.Fprintf(w, " %9s", fmt.Sprintf("warm %d", i+1))
	}
	fmt.Fprintln(w)
	phases := make([][]time.Duration, len(r.timelines))
	for i, t := range r.timelines {
		phases[i] = breakdown(t)
	}
	for pi, p := range pushPhases {
		fmt.Fprintf(w, "%-62s", p.name)
		for i := range phases {
			if d := phases[i][pi]; d >= 0 {
				fmt.Fprintf(w, " %8.2fs", d.Seconds())
			} else {
				fmt.Fprintf(w, " %9s", "n/a")
			}
		}
		fmt.Fprintln(w)
	}
	if fullTimeline && len(r.timelines) > 0 {
		fmt.Fprintf(w, "\nTimeline of the last warm push (seconds from the start of git push):\n")
		for _, e := range r.timelines[len(r.timelines)-1] {
			fmt.Fprintf(w, "%8.3f  %-8s %s\n", e.at.Seconds(), e.source, e.text)
		}
	}
}

func round(d time.Duration) string { return d.Round(time.Millisecond).String() }

func list(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = round(d)
	}
	return strings.Join(s, ", ")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// toolchainVersion returns the version of go.mod's toolchain line
// ("1.26.8"), or of its go line when that names a release.
func toolchainVersion(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	var goLine string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "toolchain":
			return strings.TrimPrefix(f[1], "go"), nil
		case "go":
			goLine = f[1]
		}
	}
	if strings.Count(goLine, ".") == 2 {
		return goLine, nil
	}
	return "", fmt.Errorf("%s names no exact Go release (toolchain line or go 1.X.Y)", gomod)
}

// copyApp copies the regular files of the test app into dst.
func copyApp(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// change writes the test app's main.go from src into dir with the served
// line rewritten for change n, a one-line change from the original and from
// every other change, and returns the text the new version serves.
func change(src, dir string, n int) (string, error) {
	b, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		return "", err
	}
	if !bytes.Contains(b, []byte(servedLine)) {
		return "", fmt.Errorf("%s/main.go has no %s to change", src, servedLine)
	}
	want := fmt.Sprintf("hello from goweb, change %d ", n)
	b = bytes.Replace(b, []byte(servedLine), []byte(`"`+want+`%s\n"`), 1)
	return want, os.WriteFile(filepath.Join(dir, "main.go"), b, 0o644)
}

// waitContent polls url (with the Host header host, when set) until it
// answers 200 with a body containing want, and returns when it did.
func waitContent(ctx context.Context, url, host, want string) (time.Time, error) {
	client := http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		if host != "" {
			req.Host = host
		}
		if resp, err := client.Do(req); err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(http.MaxBytesReader(nil, resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(body.String(), want) {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s did not serve %q: %w", url, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// copyLogs copies the *.log files of work into dir.
func copyLogs(work, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(work, "*.log"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("logs copied to %s\n", dir)
	return nil
}

// sh runs a command with a timeout and returns its standard output; a
// failure carries its standard error.
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

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// readEnvFile returns the non-empty lines of an env file.
func readEnvFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if sc.Text() != "" {
			env = append(env, sc.Text())
		}
	}
	return env, sc.Err()
}
