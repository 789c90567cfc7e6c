package pgserver_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

func TestContainerConfigValidate(t *testing.T) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	ok := pgserver.ContainerConfig{Dir: "/tmp/pg", Docker: docker, Cluster: "c1", HostID: "h1", Addr: "127.0.0.2:5432"}
	tests := []struct {
		name   string
		change func(*pgserver.ContainerConfig)
		want   string // "" when valid
	}{
		{"complete", func(*pgserver.ContainerConfig) {}, ""},
		{"IPv6", func(c *pgserver.ContainerConfig) { c.Addr = "[::1]:5432" }, ""},
		{"no dir", func(c *pgserver.ContainerConfig) { c.Dir = "" }, "directory (Dir) is required"},
		{"no docker", func(c *pgserver.ContainerConfig) { c.Docker = nil }, "Docker client is required"},
		{"no cluster", func(c *pgserver.ContainerConfig) { c.Cluster = "" }, "cluster ID"},
		{"host with a slash", func(c *pgserver.ContainerConfig) { c.HostID = "h/1" }, "host ID"},
		{"host name as address", func(c *pgserver.ContainerConfig) { c.Addr = "localhost:5432" }, "address"},
		{"no port", func(c *pgserver.ContainerConfig) { c.Addr = "127.0.0.1:0" }, "port is required"},
		{"negative timeout", func(c *pgserver.ContainerConfig) { c.StartTimeout = -time.Second }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// postgresImage returns the PostgreSQL image, building the images of
// stack.DefaultVersion that are missing first (a minute or two for the
// PostgreSQL image; the stack images take longer and need root).
func postgresImage(t *testing.T, docker *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	err := stack.Build(ctx, stack.Config{
		Version:  stack.DefaultVersion,
		Docker:   docker,
		Progress: t.Output(),
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("build the images of %s: %v", stack.DefaultVersion, err)
	}
	return stack.PostgresRef(stack.DefaultVersion)
}

// containerEnv is one cluster of PostgreSQL containers of a test.
type containerEnv struct {
	docker  *client.Client
	image   string
	cluster string
}

func newContainerEnv(t *testing.T) *containerEnv {
	docker := testenv.Docker(t) // skips under -short
	e := &containerEnv{docker: docker, image: postgresImage(t, docker), cluster: "pgtest-" + strings.ToLower(rand.Text()[:10])}
	// A backstop: the tests stop every container they start.
	testenv.CleanupContainers(t, docker, e.cluster)
	return e
}

// config returns the configuration of host's server in a new directory,
// with fsync off.
func (e *containerEnv) config(t *testing.T, host string) pgserver.ContainerConfig {
	return pgserver.ContainerConfig{
		Dir:          filepath.Join(t.TempDir(), "pg"),
		Docker:       e.docker,
		Image:        e.image,
		Cluster:      e.cluster,
		HostID:       host,
		Addr:         testenv.FreeAddr(t),
		DisableFsync: true,
		StartTimeout: 2 * time.Minute,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// start starts (or adopts) a server of cfg.
func (e *containerEnv) start(t *testing.T, cfg pgserver.ContainerConfig) *pgserver.Container {
	t.Helper()
	c, err := pgserver.StartContainer(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return c
}

// stopAtEnd stops c when t ends.
func stopAtEnd(t *testing.T, c *pgserver.Container) {
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
}

// containers returns the IDs of the cluster's containers.
func (e *containerEnv) containers(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	list, err := e.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+e.cluster))})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}

func (e *containerEnv) inspect(t *testing.T, id string) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	info, err := e.docker.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("inspect container: %v", err)
	}
	return info
}

// eventually calls fn until it returns nil, failing t with fn's last error
// after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

// queryRow runs sql on url and returns its one text value.
func queryRow(ctx context.Context, url, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var out string
	err = conn.QueryRow(ctx, sql).Scan(&out)
	return out, err
}

// execSQL runs the statements sql on url.
func execSQL(t *testing.T, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func mustQuery(t *testing.T, url, sql string) string {
	t.Helper()
	out, err := queryRow(t.Context(), url, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// TestContainer runs PostgreSQL in its container: a password connection,
// restarts after a crash and after docker kill with the data kept,
// adoption by a second start, Stop removing the container, and a new
// container on the same data afterwards.
func TestContainer(t *testing.T) {
	e := newContainerEnv(t)
	cfg := e.config(t, "h1")
	// fsync off comes with asynchronous commits, whose last transactions
	// a crash loses.
	cfg.DisableFsync = false
	c := e.start(t, cfg)
	stopAtEnd(t, c)

	if !strings.Contains(c.Name(), "h1") || !strings.Contains(c.Name(), e.cluster) {
		t.Errorf("container name %q lacks the host or cluster ID", c.Name())
	}
	pwFile := filepath.Join(cfg.Dir, pgserver.PasswordFile)
	fi, err := os.Stat(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(pw))

	info := e.inspect(t, c.ID())
	for k, want := range map[string]string{keyspace.LabelSystem: "postgres", keyspace.LabelCluster: e.cluster, keyspace.LabelHost: "h1"} {
		if got := info.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if info.HostConfig.RestartPolicy.Name != container.RestartPolicyUnlessStopped || info.HostConfig.NetworkMode != "host" {
		t.Errorf("restart policy %q, network %q; want unless-stopped, host", info.HostConfig.RestartPolicy.Name, info.HostConfig.NetworkMode)
	}
	visible := strings.Join(append(append(append(info.Config.Entrypoint, info.Config.Cmd...), info.Config.Env...), info.Args...), " ")
	if strings.Contains(visible, password) {
		t.Error("the password is on the container's command line or in its environment")
	}

	if err := c.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatalf("CreateDatabase of an existing database: %v", err)
	}
	execSQL(t, c.URL("gantry"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	if got := mustQuery(t, c.URL("gantry"), "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'postgres'"); got != "SCRAM-SHA-256$" {
		t.Errorf("the superuser's password is stored as %q..., want a SCRAM verifier", got)
	}
	if got := mustQuery(t, c.URL("gantry"), "SELECT setting FROM pg_settings WHERE name = 'listen_addresses'"); got != c.Addr().Addr().String() {
		t.Errorf("listen_addresses = %q, want %s", got, c.Addr().Addr())
	}
	wrong := strings.Replace(c.URL("gantry"), password, strings.Repeat("0", len(password)), 1)
	if _, err := queryRow(t.Context(), wrong, "SELECT 'in'"); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("a connection with a wrong password: err = %v, want a password authentication failure", err)
	}

	kept := func(url string) func() error {
		return func() error {
			got, err := queryRow(t.Context(), url, "SELECT v FROM kept")
			if err == nil && got != "still here" {
				err = fmt.Errorf("got %q", got)
			}
			return err
		}
	}
	t.Run("crash", func(t *testing.T) {
		// The server's process dies, not by a docker command: the restart
		// policy brings the container back.
		before := e.inspect(t, c.ID())
		if err := syscall.Kill(before.State.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "restart after a crash", func() error {
			if n := e.inspect(t, c.ID()).RestartCount; n <= before.RestartCount {
				return fmt.Errorf("restart count %d", n)
			}
			return kept(c.URL("gantry"))()
		})
	})
	t.Run("docker kill", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := e.docker.ContainerKill(ctx, c.ID(), "SIGKILL"); err != nil {
			t.Fatal(err)
		}
		// Whether or not the engine restarted it, a start adopts it.
		again := e.start(t, cfg)
		if again.ID() != c.ID() {
			t.Fatalf("Start after docker kill made container %s, want %s adopted", again.ID(), c.ID())
		}
		if err := kept(again.URL("gantry"))(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("adopt", func(t *testing.T) {
		again := e.start(t, cfg)
		if again.ID() != c.ID() {
			t.Fatalf("second Start made container %s, want %s adopted", again.ID(), c.ID())
		}
		if ids := e.containers(t); len(ids) != 1 {
			t.Fatalf("%d containers of the cluster, want 1", len(ids))
		}
		if got := mustQuery(t, again.URL("gantry"), "SELECT v FROM kept"); got != "still here" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("other host", func(t *testing.T) {
		// A second host on the same engine has a container of its own,
		// which the first host's Stop leaves alone.
		other := e.start(t, e.config(t, "h2"))
		stopAtEnd(t, other)
		if other.ID() == c.ID() || other.Name() == c.Name() {
			t.Fatalf("hosts h1 and h2 share container %s", c.Name())
		}
		if err := other.CreateDatabase(t.Context(), "h2"); err != nil {
			t.Fatal(err)
		}
		if err := other.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := mustQuery(t, c.URL("gantry"), "SELECT v FROM kept"); got != "still here" {
			t.Fatalf("h1 after h2 stopped: got %q", got)
		}
	})
	t.Run("stop and start again", func(t *testing.T) {
		if err := c.Stop(t.Context()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := c.Stop(t.Context()); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := e.docker.ContainerInspect(ctx, c.ID()); !cerrdefs.IsNotFound(err) {
			t.Fatalf("container after Stop: err = %v, want not found", err)
		}
		if ids := e.containers(t); len(ids) != 0 {
			t.Fatalf("%d containers of the cluster after Stop, want 0", len(ids))
		}
		again := e.start(t, cfg)
		stopAtEnd(t, again)
		if again.ID() == c.ID() {
			t.Fatal("Start after Stop adopted a removed container")
		}
		if got := mustQuery(t, again.URL("gantry"), "SELECT v FROM kept"); got != "still here" {
			t.Fatalf("data after a new container: got %q", got)
		}
		// A changed configuration replaces the container, keeping the data.
		changed := cfg
		changed.DisableFsync = true
		replaced := e.start(t, changed)
		stopAtEnd(t, replaced)
		if replaced.ID() == again.ID() {
			t.Fatal("Start with another configuration adopted the old container")
		}
		if ids := e.containers(t); len(ids) != 1 {
			t.Fatalf("%d containers of the cluster after the replacement, want 1", len(ids))
		}
		if got := mustQuery(t, replaced.URL("gantry"), "SHOW fsync"); got != "off" {
			t.Errorf("fsync = %q after the replacement, want off", got)
		}
	})
}

// TestContainerFromMachineBinaries moves a server made from the machine's
// binaries into a container: the data stays.
func TestContainerFromMachineBinaries(t *testing.T) {
	e := newContainerEnv(t)
	cfg := e.config(t, "h1")
	native, err := pgserver.Start(t.Context(), pgserver.Config{Dir: cfg.Dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	execSQL(t, native.URL("postgres"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('moved')")
	if err := native.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	c := e.start(t, cfg)
	stopAtEnd(t, c)
	if got := mustQuery(t, c.URL("postgres"), "SELECT v FROM kept"); got != "moved" {
		t.Fatalf("got %q", got)
	}
}

// TestContainerNameTaken checks that a container of another owner that
// holds the name is never adopted or removed.
func TestContainerNameTaken(t *testing.T) {
	e := newContainerEnv(t)
	cfg := e.config(t, "h1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	created, err := e.docker.ContainerCreate(ctx, &container.Config{Image: e.image, Cmd: []string{"true"},
		Labels: map[string]string{keyspace.LabelCluster: e.cluster}}, nil, nil, nil, pgserver.ContainerName(e.cluster, "h1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgserver.StartContainer(t.Context(), cfg)
	if !errors.Is(err, pgserver.ErrNameTaken) {
		t.Fatalf("StartContainer = %v, want ErrNameTaken", err)
	}
	if got := e.inspect(t, created.ID); got.ID != created.ID {
		t.Fatalf("the other container is gone")
	}
}

func TestTLSURL(t *testing.T) {
	tests := []struct {
		name, url, ca string
		want          string // "" when an error is expected
		wantErr       string
	}{
		{"plaintext URL", "postgres://postgres:pw@127.0.0.2:7432/gantry?sslmode=disable", "/data/tls/ca.crt",
			"postgres://postgres:pw@127.0.0.2:7432/gantry?sslmode=verify-full&sslrootcert=%2Fdata%2Ftls%2Fca.crt", ""},
		{"another host's CA", "postgres://postgres:pw@127.0.0.2:7432/gantry?sslmode=verify-full&sslrootcert=%2Fh1%2Ftls%2Fca.crt",
			"/h2/tls/ca.crt", "postgres://postgres:pw@127.0.0.2:7432/gantry?sslmode=verify-full&sslrootcert=%2Fh2%2Ftls%2Fca.crt", ""},
		{"other parameters kept", "postgresql://u:p@[::1]:5432/db?connect_timeout=5", "/ca.crt",
			"postgresql://u:p@[::1]:5432/db?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fca.crt", ""},
		{"relative CA", "postgres://u:p@127.0.0.1:5432/db", "tls/ca.crt", "", "absolute"},
		{"keyword form", "host=127.0.0.1 password=secret", "/ca.crt", "", "scheme"},
		{"no host", "postgres:///db?host=/tmp", "/ca.crt", "", "no host"},
		{"bad URL", "postgres://u:secret@127.0.0.1:bad/db", "/ca.crt", "", "invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pgserver.TLSURL(tt.url, tt.ca)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("TLSURL = %q, %v; want an error naming %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("the error %q shows the password", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("TLSURL = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// clusterTLS makes a cluster CA and a certificate of host for 127.0.0.1
// and localhost in a new directory.
func clusterTLS(t *testing.T, host string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if err := clustertls.Init(dir, clustertls.Host{ID: host, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// peerIPs connects to url and returns the IP addresses of the server's
// certificate.
func peerIPs(t *testing.T, url string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tc, ok := conn.PgConn().Conn().(*tls.Conn)
	if !ok {
		t.Fatalf("connection of type %T, want TLS", conn.PgConn().Conn())
	}
	var ips []string
	for _, ip := range tc.ConnectionState().PeerCertificates[0].IPAddresses {
		ips = append(ips, ip.String())
	}
	return ips
}

// TestContainerTLS turns TLS on for a server made without it (a data dir
// from before TLS): verify-full connections work and keep the data, a
// plaintext TCP connection is rejected, a client with another CA fails
// verification, the CA key stays out of the container, and a renewed
// host certificate is served after the next start.
func TestContainerTLS(t *testing.T) {
	e := newContainerEnv(t)
	cfg := e.config(t, "h1")
	plain := e.start(t, cfg)
	stopAtEnd(t, plain)
	if err := plain.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatal(err)
	}
	execSQL(t, plain.URL("gantry"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('from before TLS')")

	cfg.TLSDir = clusterTLS(t, "h1")
	c := e.start(t, cfg)
	stopAtEnd(t, c)
	if c.ID() == plain.ID() {
		t.Fatal("StartContainer with TLS adopted the container without it")
	}
	url := c.URL("gantry")
	if !strings.Contains(url, "sslmode=verify-full") || !strings.Contains(url, "sslrootcert=") {
		t.Fatalf("URL %q lacks sslmode=verify-full and sslrootcert", url)
	}
	if got := mustQuery(t, url, "SELECT v FROM kept"); got != "from before TLS" {
		t.Fatalf("data after TLS was turned on: got %q", got)
	}
	if got := mustQuery(t, url, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
		t.Errorf("pg_stat_ssl.ssl = %q for the connection of URL, want true", got)
	}
	fi, err := os.Stat(filepath.Join(cfg.TLSDir, clustertls.HostKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v after the start, want 0600", fi.Mode().Perm())
	}
	for _, m := range e.inspect(t, c.ID()).Mounts {
		if strings.HasSuffix(m.Source, clustertls.CAKeyFile) || m.Source == cfg.TLSDir {
			t.Errorf("the container mounts %s", m.Source)
		}
	}

	t.Run("plaintext refused", func(t *testing.T) {
		plainURL := strings.Split(url, "?")[0] + "?sslmode=disable"
		_, err := queryRow(t.Context(), plainURL, "SELECT 'in'")
		if err == nil || !strings.Contains(err.Error(), "no encryption") {
			t.Fatalf("a plaintext TCP connection: err = %v, want a rejection naming \"no encryption\"", err)
		}
	})
	t.Run("wrong CA", func(t *testing.T) {
		other, err := pgserver.TLSURL(url, filepath.Join(clusterTLS(t, "h1"), clustertls.CACertFile))
		if err != nil {
			t.Fatal(err)
		}
		_, err = queryRow(t.Context(), other, "SELECT 'in'")
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("a connection trusting another CA: err = %v, want a certificate verification failure", err)
		}
	})
	t.Run("address not in the certificate", func(t *testing.T) {
		other := e.config(t, "h2")
		other.TLSDir = cfg.TLSDir
		other.Addr = "127.0.0.3:5432"
		_, err := pgserver.StartContainer(t.Context(), other)
		if err == nil || !strings.Contains(err.Error(), "does not name the server's address") {
			t.Fatalf("StartContainer on an address the certificate lacks: err = %v, want one naming the certificate", err)
		}
	})
	t.Run("renewed certificate", func(t *testing.T) {
		if err := clustertls.Init(cfg.TLSDir, clustertls.Host{ID: "h1", IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 9)}}); err != nil {
			t.Fatal(err)
		}
		renewed := e.start(t, cfg)
		stopAtEnd(t, renewed)
		if renewed.ID() == c.ID() {
			t.Fatal("StartContainer after a renewal adopted the container serving the old certificate")
		}
		if ips := peerIPs(t, renewed.URL("gantry")); !slices.Contains(ips, "127.0.0.9") {
			t.Fatalf("the server's certificate names %v, want the renewed one with 127.0.0.9", ips)
		}
		if got := mustQuery(t, renewed.URL("gantry"), "SELECT v FROM kept"); got != "from before TLS" {
			t.Fatalf("data after the renewal: got %q", got)
		}
	})
}
