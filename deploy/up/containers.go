package up

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	docker "github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/store"
)

// The platform's containers that `gantryd up` runs itself
// (layer0, below the scheduler), by their keyspace.LabelSystem value;
// PostgreSQL's is pgserver.SystemPostgres.
const (
	SystemEtcd  = "etcd"
	SystemAgent = "agent"
)

// LabelSpec holds a digest of everything a platform container was created
// with (image and configuration): a container with another is replaced.
const LabelSpec = "gantry.system.spec"

// Timings of the platform's containers.
const (
	dockerTimeout = 30 * time.Second
	// readyTimeout bounds each wait for a part of the platform: etcd,
	// and the API, the router and the git receiver once the agent runs.
	readyTimeout = 3 * time.Minute
	// containerStopTimeout is the grace period of the etcd and agent
	// containers between SIGTERM and SIGKILL.
	containerStopTimeout = 10 * time.Second
	// downTimeout bounds the stop of one group of platform containers.
	downTimeout = 90 * time.Second
)

// runContainers runs the platform as containers (see docs/ARCHITECTURE.md,
// "Platform as containers"): it starts or adopts the etcd, PostgreSQL and
// agent containers, bootstraps the system apps and the scheduler's first
// job, waits until the API, the router and the git receiver answer, and
// then follows the platform's logs until ctx ends, when it stops this
// host's platform containers (Down). With cfg.Detach it returns once the
// platform is up.
func runContainers(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	n, err := node.Open(ctx, cfg.DataDir)
	if err != nil {
		return err
	}
	if cfg, err = containerPaths(cfg, n.Dir); err != nil {
		return fmt.Errorf("gantryd up: %w", err)
	}
	log.Info("gantryd up starting the platform as containers",
		"version", cfg.Version, "data", n.Dir, "cluster", n.Cluster, "host", n.HostID,
		"api_addr", cfg.APIAddr, "http_addr", cfg.HTTPAddr, "https_addr", cfg.HTTPSAddr, "ssh_addr", cfg.SSHAddr,
		"host_api_addr", cfg.HostAPIAddr, "log_addr", cfg.LogAddr, "etcd_client_addr", cfg.EtcdClientAddr,
		"etcd_peer_addr", cfg.EtcdPeerAddr, "postgres_addr", cfg.PostgresAddr, "domain", cfg.Domain,
		"advertise", cfg.AdvertiseAddr, "access_log", cfg.AccessLogPath, "acme_ca_file", cfg.ACMECAFile, "detach", cfg.Detach)
	dk, err := docker.NewClientWithOpts(docker.FromEnv, docker.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer dk.Close()
	p := &platform{cfg: cfg, n: n, docker: dk, log: log}
	before, err := listPlatform(ctx, dk, n)
	if err != nil {
		return err
	}
	started := time.Now()
	if err := p.start(ctx); err != nil {
		return failedStart(context.WithoutCancel(ctx), dk, n, before, err, log)
	}
	missing := checkImages(ctx, dk, log, stack.StackRef(stack.DefaultVersion), stack.BuilderRef(stack.DefaultVersion))
	if _, err := removeStaleImages(ctx, dk, stack.PlatformImage, p.image, stalePlatformAge, log); err != nil {
		log.Warn("could not remove the earlier platform images", "err", err)
	}
	banner(cfg, n, missing)
	if cfg.Detach {
		return nil
	}
	followLogs(ctx, dk, n, cfg.LogOut, started, log)
	log.Info("gantryd up stopping the platform's containers")
	return stopPlatform(context.WithoutCancel(ctx), dk, n, log)
}

// platform starts the containers of one node.
type platform struct {
	cfg    Config
	n      *node.Node
	docker *docker.Client
	log    *slog.Logger
	// image is the platform image the start runs, once known.
	image string
	// etcdEndpoints are the client URLs of the cluster's etcd members,
	// this host's first, once known.
	etcdEndpoints []string
}

// start brings the platform up, in the order of the design's bootstrap.
func (p *platform) start(ctx context.Context) error {
	cfg, n := p.cfg, p.n
	// Identity and images.
	image, err := stack.EnsurePlatformImage(ctx, stack.PlatformConfig{
		Version: cfg.Version, StackVersion: stack.DefaultVersion, Docker: p.docker, Progress: cfg.Out, Logger: p.log,
	})
	if err != nil {
		return err
	}
	p.image = image
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the gantryd executable: %w", err)
	}
	gantryd, err := n.InstallGantryd(exe)
	if err != nil {
		return err
	}
	socket, err := dockerSocket(p.docker)
	if err != nil {
		return err
	}

	// Layer0 state: etcd, then PostgreSQL and the migrations. The host
	// certificate serves both.
	if err := n.EnsureTLS(ctx, cfg.EtcdClientAddr, cfg.EtcdPeerAddr, cfg.PostgresAddr); err != nil {
		return err
	}
	etcd, err := p.startEtcd(ctx, image)
	if err != nil {
		return err
	}
	defer etcd.Close()
	var dbURL string
	if n.Joined() {
		// The cluster's PostgreSQL runs on the host that made it, which
		// may be starting too (a reboot of the whole cluster).
		if dbURL, err = n.DatabaseURL(); err != nil {
			return err
		}
		if err := waitMigrate(ctx, dbURL, p.log); err != nil {
			return err
		}
	} else {
		if dbURL, err = p.startPostgres(ctx); err != nil {
			return err
		}
		if err := controller.Migrate(ctx, dbURL, p.log.With("component", "migrate")); err != nil {
			return err
		}
	}
	api := node.APIURL(cfg.APIAddr)
	if err := n.EnsureAdminEnv(ctx, dbURL, api); err != nil {
		return err
	}

	// The system apps, and the scheduler's own job (inception).
	st, err := store.Open(dbURL, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	// The apps made now (the first start) get their release at once; the
	// others keep theirs until the agent runs, and are deployed below.
	apps := systemApps(cfg, n, image, node.BuildEnv(ctx, p.log))
	if err := createSystemApps(ctx, st, apps, p.log); err != nil {
		return err
	}
	if err := inception(ctx, etcd, st, n, apps, cfg.Domain, p.log); err != nil {
		return err
	}

	// The agent, which runs the system apps' jobs (their {{etcd}} is
	// its --etcd). It reads its jobs'
	// cgroups (gantry ps's CPU and memory): their processes are in the
	// host's PID namespace, their cgroups under the host's /sys/fs/cgroup,
	// mounted over the container's own, read-only.
	if _, err := p.ensure(ctx, SystemAgent, image, []string{"host", "--data", n.Dir,
		"--addr", cfg.HostAPIAddr, "--advertise", cfg.AdvertiseAddr, "--etcd", strings.Join(p.etcdEndpoints, ","),
		"--log-url", "http://" + cfg.LogAddr, "--gantryd", gantryd},
		[]string{"DOCKER_HOST=unix://" + dockerSocketPath}, append(p.dataMount(),
			mount.Mount{Type: mount.TypeBind, Source: socket, Target: dockerSocketPath},
			mount.Mount{Type: mount.TypeBind, Source: cgroupRoot, Target: cgroupRoot, ReadOnly: true}),
		func(hc *container.HostConfig) { hc.PidMode = "host" }); err != nil {
		return err
	}
	if err := waitHealthy(ctx, api+"/healthz", readyTimeout); err != nil {
		return err
	}
	// An upgrade (or any change of the system apps' releases): each app
	// in turn is deployed to its new release, its new job up before the
	// old one stops.
	if err := deploySystemApps(ctx, st, apps, cfg.Out, p.log); err != nil {
		return err
	}
	for what, addr := range map[string]string{"router": cfg.HTTPAddr, "git receiver": cfg.SSHAddr} {
		if err := waitListening(ctx, what, addr, readyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// restartController restarts this host's running containers of the
// controller, so that they read the database URL again.
func (p *platform) restartController(ctx context.Context) error {
	f := platformFilter(p.n)
	f.Add("label", keyspace.LabelApp+"="+AppController)
	lctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	list, err := p.docker.ContainerList(lctx, container.ListOptions{Filters: f})
	cancel()
	if err != nil {
		return fmt.Errorf("list the controller's containers: %w", err)
	}
	for _, c := range list {
		p.log.Info("restarting the controller: the database URL changed", "container", strings.TrimPrefix(firstName(c), "/"))
		rctx, cancel := context.WithTimeout(ctx, downTimeout)
		err := p.docker.ContainerRestart(rctx, c.ID, container.StopOptions{})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("restart the controller's container %s: %w", firstName(c), err)
		}
	}
	return nil
}

// dockerSocketPath is where the agent's container finds the engine's
// socket.
const dockerSocketPath = "/var/run/docker.sock"

// cgroupRoot is where the host's cgroup hierarchies are mounted; the
// agent's container sees the host's there.
const cgroupRoot = "/sys/fs/cgroup"

// dockerSocket returns the path of the engine's Unix socket, which the
// agent's container mounts: the only container with it.
func dockerSocket(dk *docker.Client) (string, error) {
	path, ok := strings.CutPrefix(dk.DaemonHost(), "unix://")
	if !ok {
		return "", fmt.Errorf("the platform as containers needs the Docker engine on a Unix socket, not %s", dk.DaemonHost())
	}
	return path, nil
}

// dataMount mounts the data dir at its own path, so that the paths the
// roles write into etcd and Docker (the agent's artifact cache, gantryd)
// are the host's.
func (p *platform) dataMount() []mount.Mount {
	return []mount.Mount{{Type: mount.TypeBind, Source: p.n.Dir, Target: p.n.Dir}}
}

// containerName is the name of this host's platform container component.
func containerName(n *node.Node, component string) string {
	return "gantry-" + n.Cluster + "-" + n.HostID + "-" + component
}

// ensure creates, starts, adopts or replaces the platform container
// component of the platform image, running gantryd with args on the host's
// network with the given environment and mounts, restarting unless
// stopped; host, when not nil, changes its host configuration further. A
// container of the same name with the same image and configuration
// (LabelSpec) is adopted, and started when it is not running; one with
// another is replaced.
func (p *platform) ensure(ctx context.Context, component, image string, args, env []string, mounts []mount.Mount,
	host func(*container.HostConfig)) (string, error) {
	name := containerName(p.n, component)
	stop := int(containerStopTimeout / time.Second)
	cfg := &container.Config{
		Image:       image,
		Cmd:         args,
		Env:         env,
		StopTimeout: &stop,
		Labels: map[string]string{
			keyspace.LabelSystem:  component,
			keyspace.LabelCluster: p.n.Cluster,
			keyspace.LabelHost:    p.n.HostID,
		},
	}
	hc := &container.HostConfig{
		NetworkMode:   "host",
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Mounts:        mounts,
		LogConfig:     container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
	}
	if host != nil {
		host(hc)
	}
	b, err := json.Marshal([]any{cfg, hc})
	if err != nil {
		return "", fmt.Errorf("%s container spec: %w", component, err)
	}
	sum := sha256.Sum256(b)
	want := hex.EncodeToString(sum[:16])

	ictx, cancel := context.WithTimeout(ctx, dockerTimeout)
	existing, err := p.docker.ContainerInspect(ictx, name)
	cancel()
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return "", fmt.Errorf("inspect container %s: %w", name, err)
	default:
		l := existing.Config.Labels
		for k, v := range cfg.Labels {
			if l[k] != v {
				return "", fmt.Errorf("container name %s is taken by a container with label %s=%q, want %q", name, k, l[k], v)
			}
		}
		if l[LabelSpec] == want {
			if existing.State != nil && (existing.State.Running || existing.State.Restarting) {
				p.log.Info("adopting the running platform container", "container", name)
				return existing.ID, nil
			}
			p.log.Info("starting the platform container again", "container", name)
			return existing.ID, p.startContainer(ctx, name, existing.ID)
		}
		p.log.Info("replacing the platform container: its image or configuration changed", "container", name)
		if err := stopContainer(ctx, p.docker, existing.ID); err != nil {
			return "", err
		}
		rctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		err := p.docker.ContainerRemove(rctx, existing.ID, container.RemoveOptions{Force: true})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("remove container %s: %w", name, err)
		}
	}
	cfg.Labels[LabelSpec] = want
	cctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	created, err := p.docker.ContainerCreate(cctx, cfg, hc, nil, nil, name)
	cancel()
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	p.log.Info("created the platform container", "container", name, "image", image)
	return created.ID, p.startContainer(ctx, name, created.ID)
}

func (p *platform) startContainer(ctx context.Context, name, id string) error {
	sctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := p.docker.ContainerStart(sctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", name, err)
	}
	return nil
}

// waitMigrate migrates the cluster's database at dbURL, on another host,
// trying again while it does not answer, for at most readyTimeout.
func waitMigrate(ctx context.Context, dbURL string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for logged := false; ; {
		err := controller.Migrate(ctx, dbURL, log.With("component", "migrate"))
		if err == nil {
			return nil
		}
		if !logged {
			log.Info("waiting for the cluster's PostgreSQL", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the cluster's PostgreSQL: %w", err)
		case <-time.After(time.Second):
		}
	}
}

// waitEtcd waits until etcd answers a read.
func waitEtcd(ctx context.Context, etcd *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := etcd.Get(rctx, "/gantry/", clientv3.WithCountOnly())
		rcancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// platformFilter selects this host's platform containers.
func platformFilter(n *node.Node) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", keyspace.LabelSystem),
		filters.Arg("label", keyspace.LabelCluster+"="+n.Cluster),
		filters.Arg("label", keyspace.LabelHost+"="+n.HostID),
	)
}

// stopContainer stops container id with its own grace period.
func stopContainer(ctx context.Context, dk *docker.Client, id string) error {
	ctx, cancel := context.WithTimeout(ctx, downTimeout)
	defer cancel()
	if err := dk.ContainerStop(ctx, id, container.StopOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", id[:min(len(id), 12)], err)
	}
	return nil
}

// listPlatform lists this host's running platform containers.
func listPlatform(ctx context.Context, dk *docker.Client, n *node.Node) ([]container.Summary, error) {
	lctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	list, err := dk.ContainerList(lctx, container.ListOptions{Filters: platformFilter(n)})
	if err != nil {
		return nil, fmt.Errorf("list the platform's containers: %w", err)
	}
	return list, nil
}

// failedStart stops what a start that failed with cause had started, and
// returns cause with what it stopped. The platform containers running
// before the start (before) are adopted ones and keep running; so do the
// system apps' jobs when the agent that runs them ran before.
func failedStart(ctx context.Context, dk *docker.Client, n *node.Node, before []container.Summary, cause error, log *slog.Logger) error {
	now, err := listPlatform(ctx, dk, n)
	if err != nil {
		return fmt.Errorf("gantryd up failed: %w; the containers it started may still run (gantryd down stops them): %w", cause, err)
	}
	stop := startedBy(before, now)
	log.Error("gantryd up failed: stopping the platform containers this start started", "containers", len(stop))
	if err := stopContainers(ctx, dk, stop, log); err != nil {
		return fmt.Errorf("gantryd up failed: %w; stopping the containers it started: %w", cause, err)
	}
	return fmt.Errorf("gantryd up failed (stopped the %d platform containers it had started, kept the %d running ones it found): %w",
		len(stop), len(now)-len(stop), cause)
}

// startedBy returns the containers of now that were not running before,
// without the system apps' jobs when the agent ran before (it runs them
// and would start them again), and without the etcd, PostgreSQL and agent
// containers that replaced running ones (an upgrade that failed later
// leaves the platform running, on the new containers).
func startedBy(before, now []container.Summary) []container.Summary {
	ran, ranComponent := map[string]bool{}, map[string]bool{}
	for _, c := range before {
		ran[c.ID] = true
		if stopRank(c) != rankJob {
			ranComponent[c.Labels[keyspace.LabelSystem]] = true
		}
	}
	var out []container.Summary
	for _, c := range now {
		job := stopRank(c) == rankJob
		if ran[c.ID] || (job && ranComponent[SystemAgent]) || (!job && ranComponent[c.Labels[keyspace.LabelSystem]]) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// The order in which the platform's containers stop: the agent first (so
// that it starts nothing again), then the system apps' jobs, then
// PostgreSQL, then etcd.
const (
	rankAgent = iota
	rankJob
	rankPostgres
	rankEtcd
	ranks
)

// stopRank is the step of container c in the platform's stop.
func stopRank(c container.Summary) int {
	switch c.Labels[keyspace.LabelSystem] {
	case SystemAgent:
		return rankAgent
	case pgserver.SystemPostgres:
		return rankPostgres
	case SystemEtcd:
		return rankEtcd
	default:
		return rankJob // a system app's job
	}
}

// stopPlatform stops this host's running platform containers, keeping
// them for the next start, in the order of stopRank. App containers keep
// running.
func stopPlatform(ctx context.Context, dk *docker.Client, n *node.Node, log *slog.Logger) error {
	list, err := listPlatform(ctx, dk, n)
	if err != nil {
		return err
	}
	return stopContainers(ctx, dk, list, log)
}

// stopContainers stops the platform containers of list, in the order of
// stopRank, those of one step at once.
func stopContainers(ctx context.Context, dk *docker.Client, list []container.Summary, log *slog.Logger) error {
	var errs []error
	for r := range ranks {
		done := make(chan error)
		started := 0
		for _, c := range list {
			if stopRank(c) != r {
				continue
			}
			started++
			go func() {
				log.Info("stopping platform container", "container", strings.TrimPrefix(firstName(c), "/"))
				done <- stopContainer(ctx, dk, c.ID)
			}()
		}
		for range started {
			if err := <-done; err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func firstName(c container.Summary) string {
	if len(c.Names) == 0 {
		return c.ID
	}
	return c.Names[0]
}

// DownConfig configures Down.
type DownConfig struct {
	// DataDir is the data dir of the platform to stop; required.
	DataDir string
	// Logger receives progress; required.
	Logger *slog.Logger
}

// Validate reports missing fields.
func (c DownConfig) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("no data dir"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("no logger"))
	}
	return errors.Join(errs...)
}

// Down stops the platform containers of the data dir's host (`gantryd
// down`), as a foreground `gantryd up` does when it is
// stopped: the agent, the system apps' jobs, PostgreSQL and etcd stop and
// stay for the next `gantryd up`; app containers keep running.
func Down(ctx context.Context, cfg DownConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("gantryd down: %w", err)
	}
	n, err := node.Open(ctx, cfg.DataDir)
	if err != nil {
		return err
	}
	dk, err := docker.NewClientWithOpts(docker.FromEnv, docker.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer dk.Close()
	return stopPlatform(ctx, dk, n, cfg.Logger)
}
