package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// dockerfile is the comparison's Dockerfile, relative to the repository
// root: next to the benchmark, not in the app, so a push does not carry it.
const dockerfile = "deploy/bench/deploy/Dockerfile.goweb"

// dockerArgs are the build arguments of the Dockerfile.
type dockerArgs struct {
	builder, runImage string
	goproxy           string
	goVersion         string
}

// benchDocker builds the test app with Dockerfile.goweb and runs it, cold
// (--no-cache) and then warm (one-line changes on the layer cache), each
// timed from the start of `docker build` until the new container answers
// with the new content. It removes every container and image it made
// before it returns.
func benchDocker(ctx context.Context, work, src string, args dockerArgs, runs int, res *results) error {
	file, err := filepath.Abs(dockerfile)
	if err != nil {
		return err
	}
	dir := filepath.Join(work, "docker")
	if err := copyApp(src, dir); err != nil {
		return err
	}
	id := fmt.Sprintf("gantry-bench-deploy-%d", time.Now().UnixNano())
	label := "gantry-bench=" + id
	defer removeImages(label)
	defer removeContainers(context.Background(), label)
	// Without buildx the docker CLI has only the legacy builder; say so
	// rather than let it print a deprecation notice or fail.
	buildEnv := os.Environ()
	builderName := "BuildKit"
	if _, err := sh(ctx, "docker", "buildx", "version"); err != nil {
		buildEnv = append(buildEnv, "DOCKER_BUILDKIT=0")
		builderName = "legacy builder (no buildx)"
	}
	b := dockerBench{work: work, dir: dir, file: file, id: id, label: label, args: args, env: buildEnv}

	fmt.Printf("==> docker build (%s) + docker run, cold (--no-cache)\n", builderName)
	d, container, err := b.buildRun(ctx, "cold", "hello from goweb ", true)
	if err != nil {
		return err
	}
	res.dockerCold = d
	fmt.Printf("    cold: %s\n", round(d))
	for i := 1; i <= runs; i++ {
		want, err := change(src, dir, i)
		if err != nil {
			return err
		}
		fmt.Printf("==> docker build + docker run, warm %d (one-line change, layer cache)\n", i)
		d, next, err := b.buildRun(ctx, fmt.Sprintf("warm-%d", i), want, false)
		if err != nil {
			return err
		}
		// Like a deployment, the old container serves until the new one
		// answers; removing it is not timed.
		if _, err := sh(ctx, "docker", "rm", "-f", container); err != nil {
			return err
		}
		container = next
		res.dockerWarm = append(res.dockerWarm, d)
		fmt.Printf("    warm %d: %s\n", i, round(d))
	}
	return nil
}

type dockerBench struct {
	work, dir, file string
	id, label       string
	args            dockerArgs
	env             []string
}

// buildRun builds the image (tagged with the run's name), starts a
// container of it and waits until it serves want. It returns the time that
// took and the container's ID. The build output, with times, is kept in
// work/docker-<name>.log.
func (b *dockerBench) buildRun(ctx context.Context, name, want string, noCache bool) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(ctx, liveTimeout)
	defer cancel()
	image := "gantry-bench/goweb:" + strings.TrimPrefix(b.id, "gantry-bench-deploy-") + "-" + name
	args := []string{"build", "-f", b.file, "-t", image,
		"--build-arg", "BUILDER_IMAGE=" + b.args.builder, "--build-arg", "RUN_IMAGE=" + b.args.runImage,
		"--build-arg", "GOPROXY=" + b.args.goproxy, "--build-arg", "GO_VERSION=" + b.args.goVersion,
		"--build-arg", "BENCH_ID=" + b.id}
	if noCache {
		args = append(args, "--no-cache")
	}
	args = append(args, b.dir)
	start := time.Now()
	out := &stampWriter{start: start}
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = b.env
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if werr := os.WriteFile(filepath.Join(b.work, "docker-"+name+".log"), []byte(out.String()), 0o644); werr != nil {
		return 0, "", werr
	}
	if err != nil {
		return 0, "", fmt.Errorf("docker build (%s): %w\n%s", name, err, out)
	}
	id, err := sh(ctx, "docker", "run", "-d", "--label", b.label, "-p", "127.0.0.1::8080", image)
	if err != nil {
		return 0, "", err
	}
	id = strings.TrimSpace(id)
	port, err := sh(ctx, "docker", "port", id, "8080/tcp")
	if err != nil {
		return 0, id, err
	}
	addr := strings.TrimSpace(strings.Split(port, "\n")[0])
	live, err := waitContent(ctx, "http://"+addr+"/", "", want)
	if err != nil {
		return 0, id, err
	}
	return live.Sub(start), id, nil
}

// removeImages removes the images carrying label: the tagged ones first,
// which takes their untagged parents with them, then what is left (the
// build stage's layers), children before parents.
func removeImages(label string) {
	ctx := context.Background()
	for range 5 {
		out, err := sh(ctx, "docker", "images", "-a", "--filter", "label="+label, "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-deploy: list images: %v\n", err)
			return
		}
		var tagged, untagged []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			id, ref, ok := strings.Cut(line, " ")
			switch {
			case !ok:
			case ref == "<none>:<none>":
				untagged = append(untagged, id)
			default:
				tagged = append(tagged, ref)
			}
		}
		if len(tagged)+len(untagged) == 0 {
			return
		}
		// docker lists the newest first, so children come before their
		// parents; one that still has children is left for the next round.
		for _, ref := range append(tagged, untagged...) {
			_, _ = sh(ctx, "docker", "rmi", "-f", ref)
		}
	}
	fmt.Fprintf(os.Stderr, "bench-deploy: some images labelled %s are left; remove them with docker rmi\n", label)
}
