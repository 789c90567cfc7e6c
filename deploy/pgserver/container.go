package pgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// SystemPostgres is the value of the keyspace.LabelSystem label of the
// PostgreSQL container.
const SystemPostgres = "postgres"

// LabelSpec holds a digest of everything the container was created with
// (image ID, address, mounts, settings): Start replaces a container whose
// digest differs instead of adopting it.
const LabelSpec = "gantry.postgres.spec"

// Layout of ContainerConfig.Dir and of the container.
const (
	// PasswordFile is the file in ContainerConfig.Dir holding the
	// superuser's password (hex digits, mode 0600).
	PasswordFile = "password"
	// containerPasswordPath is where the password file is mounted, read
	// only, in the container.
	containerPasswordPath = "/run/gantry/postgres-password"
	// containerSocketDir holds the server's unix socket inside the
	// container, for `docker exec -u postgres psql -h /tmp` and the
	// health check.
	containerSocketDir = "/tmp"
	// containerTLSIn is where the host certificate and key of
	// ContainerConfig.TLSDir are mounted, read only; containerTLSDir is
	// where each start of the container copies them for the postgres
	// user (in the container's own file system).
	containerTLSIn  = "/run/gantry/tls-in"
	containerTLSDir = "/run/gantry/tls"
)

// LabelTLS holds a digest of the host certificate the container serves
// (ContainerConfig.TLSDir): a renewed certificate changes the
// container's spec, so the next StartContainer replaces the container
// and the server serves the new one.
const LabelTLS = "gantry.postgres.tls"

const (
	// dockerTimeout bounds each Docker call but the stop.
	dockerTimeout = 30 * time.Second
	// stopGrace is how long a stop waits for a fast shutdown (SIGINT)
	// before Docker kills the server.
	stopGrace = 30 * time.Second
	// pollInterval is the period of the readiness checks.
	pollInterval = 200 * time.Millisecond
	// passwordBytes is the entropy of a generated password.
	passwordBytes = 24
)

var (
	// ErrNoImage means that the PostgreSQL image is not in the engine.
	ErrNoImage = errors.New("pgserver: PostgreSQL image missing")
	// ErrNameTaken means that a container that is not this host's
	// PostgreSQL holds the container's name.
	ErrNameTaken = errors.New("pgserver: container name taken by another container")
	// ErrContainerExited means that the server's container stopped or kept
	// restarting during start-up.
	ErrContainerExited = errors.New("pgserver: PostgreSQL container exited")
)

// idPattern is the syntax of ContainerConfig.Cluster and HostID, which go
// into a container name.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// passwordPattern is the syntax of the password file's content.
var passwordPattern = regexp.MustCompile(`^[0-9a-f]{32,128}$`)

// containerScript runs as root in the container: it makes the cluster on
// the first start (initdb into the mounted data directory), gives the data
// directory to the postgres user when another user made it (a data
// directory of the machine-binaries mode), with TLS on copies the mounted
// host certificate and key for the postgres user (at every start of the
// container, so a restart serves the files of the moment), writes
// pg_hba.conf (peer on the socket; SCRAM over TCP, with TLS on only over
// TLS), sets the superuser's password from the mounted file in
// single-user mode (read from a shell builtin, so it is on no command
// line), and execs postgres as the postgres user. Arguments: listen
// address, port, "on" or "off" for fsync, "on" or "off" for TLS, then
// "-c name=value" settings.
const containerScript = `set -eu
addr=$1 port=$2 fsync=$3 tls=$4
shift 4
pgdata=` + stack.PostgresDataDir + `
pw=$(cat ` + containerPasswordPath + `)
case $pw in ''|*[!0-9a-f]*) echo "gantry: ` + containerPasswordPath + ` must hold hex digits" >&2; exit 1;; esac
if [ ! -s "$pgdata/PG_VERSION" ]; then
	# Remove the remains of an interrupted initdb.
	find "$pgdata" -mindepth 1 -delete
	chown postgres:postgres "$pgdata"
	chmod 0700 "$pgdata"
	nosync=
	if [ "$fsync" = off ]; then nosync=--no-sync; fi
	setpriv --reuid=postgres --regid=postgres --init-groups initdb --pgdata="$pgdata" --username=postgres \
		--encoding=UTF8 --locale=C --auth-local=peer --auth-host=scram-sha-256 $nosync
elif [ "$(stat -c %u "$pgdata")" != "$(id -u postgres)" ]; then
	chown -R postgres:postgres "$pgdata"
fi
if [ "$tls" = on ]; then
	install -d -o postgres -g postgres -m 0700 ` + containerTLSDir + `
	install -o postgres -g postgres -m 0644 ` + containerTLSIn + `/` + clustertls.HostCertFile + ` ` + containerTLSDir + `/` + clustertls.HostCertFile + `
	install -o postgres -g postgres -m 0600 ` + containerTLSIn + `/` + clustertls.HostKeyFile + ` ` + containerTLSDir + `/` + clustertls.HostKeyFile + `
	tcp="hostssl all all all scram-sha-256
hostnossl all all all reject"
else
	tcp="host all all all scram-sha-256"
fi
cat >"$pgdata/pg_hba.conf" <<EOF
# Written by gantry at every start of the container.
local all all peer
$tcp
EOF
chown postgres:postgres "$pgdata/pg_hba.conf"
chmod 0600 "$pgdata/pg_hba.conf"
printf "ALTER ROLE postgres PASSWORD '%s';\n" "$pw" |
	setpriv --reuid=postgres --regid=postgres --init-groups postgres --single -D "$pgdata" "$@" postgres >/dev/null
if [ "$tls" = on ]; then
	set -- "$@" -c ssl=on -c ssl_min_protocol_version=TLSv1.2 \
		-c ssl_cert_file=` + containerTLSDir + `/` + clustertls.HostCertFile + ` -c ssl_key_file=` + containerTLSDir + `/` + clustertls.HostKeyFile + `
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$pgdata" \
	-c listen_addresses="$addr" -p "$port" -c unix_socket_directories=` + containerSocketDir + ` "$@"
`

// ContainerConfig configures StartContainer.
type ContainerConfig struct {
	// Dir is the server's directory on the host: the cluster files go to
	// Dir/pgdata, bind-mounted into the container, and the superuser's
	// password to Dir/password (created on the first start, mode 0600).
	// It is created (mode 0700) when missing. Required.
	Dir string
	// Docker is the engine that runs the container; required.
	Docker *client.Client
	// Image is the PostgreSQL image. "" means
	// stack.PostgresRef(stack.DefaultVersion), made by gantryd stack build.
	Image string
	// Cluster is the cluster ID, in the container's name and its
	// keyspace.LabelCluster label; required.
	Cluster string
	// HostID is the ID of the host that owns the container, in its name
	// and its keyspace.LabelHost label; required.
	HostID string
	// Addr is the IP address and port the server listens on, e.g.
	// 127.0.0.2:5432. The container uses the host's network, so the
	// server listens on exactly this address. Required.
	Addr string
	// TLSDir, when set, is the host's cluster TLS directory
	// (layer0/clustertls: host.crt, host.key, ca.crt). The server then
	// serves TLS with the host certificate, which must name the IP of
	// Addr, and takes TCP connections only over TLS (plaintext ones are
	// rejected); URL gives verify-full URLs against TLSDir/ca.crt. The
	// certificate and key are mounted read-only and copied for the
	// postgres user at each start of the container; a changed
	// certificate replaces the container at the next StartContainer.
	TLSDir string
	// DisableFsync turns fsync off: much faster, but a machine crash can
	// lose or corrupt the data. Meant for tests. False keeps fsync on.
	DisableFsync bool
	// StartTimeout bounds StartContainer: creating or adopting the
	// container, initdb on the first start, and the wait until the server
	// accepts a password connection. Zero means 60 seconds.
	StartTimeout time.Duration
	// Logger receives progress messages. Nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the configuration is usable.
func (c ContainerConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("a directory (Dir) is required"))
	}
	if c.Docker == nil {
		errs = append(errs, errors.New("a Docker client is required"))
	}
	if !idPattern.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("cluster ID %q must match %s", c.Cluster, idPattern))
	}
	if !idPattern.MatchString(c.HostID) {
		errs = append(errs, fmt.Errorf("host ID %q must match %s", c.HostID, idPattern))
	}
	if ap, err := netip.ParseAddrPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("address: %w", err))
	} else if ap.Port() == 0 {
		errs = append(errs, fmt.Errorf("address %s: a port is required", c.Addr))
	}
	if c.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("start timeout %s is negative", c.StartTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgserver: invalid container config: %w", err)
	}
	return nil
}

// ContainerName returns the name of the PostgreSQL container of host
// hostID in cluster.
func ContainerName(cluster, hostID string) string {
	return "gantry-" + cluster + "-" + hostID + "-postgres"
}

// Container is PostgreSQL running in a container of the PostgreSQL image.
type Container struct {
	id       string
	name     string
	addr     netip.AddrPort
	password string
	// caFile is the CA of the server's certificate, "" without TLS.
	caFile string
	docker *client.Client
	log    *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// StartContainer runs PostgreSQL in a container of the PostgreSQL image and
// waits until it accepts a password connection. The container
// (ContainerName) uses the host's network, restarts unless stopped, and
// carries the labels keyspace.LabelSystem=postgres, keyspace.LabelCluster
// and keyspace.LabelHost. A container of the same name and labels is
// adopted: started when it is not running, replaced when it was created
// with another image or configuration (LabelSpec). Stop removes it.
func StartContainer(ctx context.Context, cfg ContainerConfig) (*Container, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ref := cfg.Image
	if ref == "" {
		ref = stack.PostgresRef(stack.DefaultVersion)
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgserver: resolve %s: %w", cfg.Dir, err)
	}
	pgdata := filepath.Join(dir, dataSubdir)
	if err := os.MkdirAll(pgdata, 0o700); err != nil {
		return nil, fmt.Errorf("pgserver: create %s: %w", pgdata, err)
	}
	password, err := ensurePassword(log, filepath.Join(dir, PasswordFile))
	if err != nil {
		return nil, err
	}
	imageID, err := imageID(ctx, cfg.Docker, ref)
	if err != nil {
		return nil, err
	}
	addr := netip.MustParseAddrPort(cfg.Addr)
	c := &Container{
		name:     ContainerName(cfg.Cluster, cfg.HostID),
		addr:     addr,
		password: password,
		docker:   cfg.Docker,
		log:      log,
	}
	var tlsDigest string
	if cfg.TLSDir != "" {
		if cfg.TLSDir, err = filepath.Abs(cfg.TLSDir); err != nil {
			return nil, fmt.Errorf("pgserver: resolve %s: %w", cfg.TLSDir, err)
		}
		if tlsDigest, err = certDigest(cfg.TLSDir, addr.Addr()); err != nil {
			return nil, err
		}
		c.caFile = filepath.Join(cfg.TLSDir, clustertls.CACertFile)
	}
	spec := containerSpec(cfg, ref, dir, addr, tlsDigest)
	if c.id, err = c.ensure(ctx, spec, imageID); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	log.Info("postgres ready", "container", c.name, "id", c.id[:12], "addr", addr, "image", ref, "dir", dir, "fsync", !cfg.DisableFsync, "tls", c.caFile != "")
	return c, nil
}

// certDigest returns a digest of the host certificate in the cluster TLS
// directory dir, after checking that it names ip (the clients verify it)
// and that its key and the CA are there too.
func certDigest(dir string, ip netip.Addr) (string, error) {
	for _, f := range []string{clustertls.HostKeyFile, clustertls.CACertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("pgserver: TLS: %w", err)
		}
	}
	path := filepath.Join(dir, clustertls.HostCertFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pgserver: TLS: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("pgserver: TLS: %s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("pgserver: TLS: %s: %w", path, err)
	}
	if err := cert.VerifyHostname(ip.String()); err != nil {
		return "", fmt.Errorf("pgserver: TLS: the host certificate %s does not name the server's address: %w", path, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

// ensurePassword returns the password in path, creating the file with a
// random password when it is missing.
func ensurePassword(log *slog.Logger, path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		buf := make([]byte, passwordBytes)
		rand.Read(buf)
		pw := hex.EncodeToString(buf)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return ensurePassword(log, path) // created meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("pgserver: create password file: %w", err)
		}
		_, err = f.WriteString(pw + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("pgserver: write password file: %w", err)
		}
		log.Info("generated the PostgreSQL superuser password", "file", path)
		return pw, nil
	}
	if err != nil {
		return "", fmt.Errorf("pgserver: read password file: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if !passwordPattern.MatchString(pw) {
		return "", fmt.Errorf("pgserver: password file %s must hold 32 to 128 lowercase hex digits", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("pgserver: password file: %w", err)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("pgserver: password file: %w", err)
		}
		log.Warn("password file was readable by others; made it 0600", "file", path, "mode", fi.Mode().Perm().String())
	}
	return pw, nil
}

// imageID returns the ID of image ref, or ErrNoImage.
func imageID(ctx context.Context, docker *client.Client, ref string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	img, err := docker.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("%w: %s (gantryd stack build makes it)", ErrNoImage, ref)
	}
	if err != nil {
		return "", fmt.Errorf("pgserver: inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

// spec is what a container is created with.
type spec struct {
	Config     *container.Config
	HostConfig *container.HostConfig
}

// containerSpec returns the container of cfg, without LabelSpec;
// tlsDigest is the certDigest of cfg.TLSDir, "" without TLS.
func containerSpec(cfg ContainerConfig, ref, dir string, addr netip.AddrPort, tlsDigest string) spec {
	fsync := "on"
	if cfg.DisableFsync {
		fsync = "off"
	}
	tls := "off"
	if cfg.TLSDir != "" {
		tls = "on"
	}
	cmd := []string{addr.Addr().String(), strconv.Itoa(int(addr.Port())), fsync, tls}
	for _, s := range settings(cfg.DisableFsync) {
		cmd = append(cmd, "-c", s)
	}
	stopTimeout := int(stopGrace / time.Second)
	s := spec{
		Config: &container.Config{
			Image:      ref,
			Entrypoint: []string{"/bin/sh", "-c", containerScript, "gantry-postgres"},
			Cmd:        cmd,
			Labels: map[string]string{
				keyspace.LabelSystem:  SystemPostgres,
				keyspace.LabelCluster: cfg.Cluster,
				keyspace.LabelHost:    cfg.HostID,
			},
			StopSignal:  "SIGINT", // a fast shutdown
			StopTimeout: &stopTimeout,
			Healthcheck: &container.HealthConfig{
				Test: []string{"CMD", "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
					"pg_isready", "--quiet", "--username=postgres", "--dbname=postgres", "--host=" + containerSocketDir, "--port=" + strconv.Itoa(int(addr.Port()))},
				Interval: 10 * time.Second,
				Timeout:  5 * time.Second,
				Retries:  3,
			},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:   "host",
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			Mounts: []mount.Mount{
				{Type: mount.TypeBind, Source: filepath.Join(dir, dataSubdir), Target: stack.PostgresDataDir},
				{Type: mount.TypeBind, Source: filepath.Join(dir, PasswordFile), Target: containerPasswordPath, ReadOnly: true},
			},
			ShmSize:   256 << 20,
			LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
		},
	}
	if cfg.TLSDir != "" {
		// The two files, not the directory: the CA's key stays out of
		// the container.
		for _, f := range []string{clustertls.HostCertFile, clustertls.HostKeyFile} {
			s.HostConfig.Mounts = append(s.HostConfig.Mounts, mount.Mount{Type: mount.TypeBind,
				Source: filepath.Join(cfg.TLSDir, f), Target: containerTLSIn + "/" + f, ReadOnly: true})
		}
		s.Config.Labels[LabelTLS] = tlsDigest
	}
	return s
}

// digest returns the LabelSpec value of s for image imageID.
func (s spec) digest(imageID string) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("pgserver: container spec: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(imageID))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// ensure creates, starts, adopts or replaces the container and returns its
// ID.
func (c *Container) ensure(ctx context.Context, s spec, imageID string) (string, error) {
	want, err := s.digest(imageID)
	if err != nil {
		return "", err
	}
	labels := s.Config.Labels
	for attempt := 0; ; attempt++ {
		existing, found, err := c.inspect(ctx, c.name)
		if err != nil {
			return "", err
		}
		if found {
			l := existing.Config.Labels
			for _, k := range []string{keyspace.LabelSystem, keyspace.LabelCluster, keyspace.LabelHost} {
				if l[k] != labels[k] {
					return "", fmt.Errorf("%w: %s has label %s=%q, want %q", ErrNameTaken, c.name, k, l[k], labels[k])
				}
			}
			if l[LabelSpec] == want {
				if existing.State != nil && (existing.State.Running || existing.State.Restarting) {
					c.log.Info("adopting the running postgres container", "container", c.name, "id", existing.ID[:12])
					return existing.ID, nil
				}
				c.log.Info("starting the existing postgres container", "container", c.name, "id", existing.ID[:12])
				return existing.ID, c.start(ctx, existing.ID)
			}
			c.log.Info("replacing the postgres container: its image or configuration changed", "container", c.name, "id", existing.ID[:12])
			if err := stopAndRemove(ctx, c.docker, existing.ID); err != nil {
				return "", err
			}
		}
		cfg := *s.Config
		cfg.Labels = map[string]string{LabelSpec: want}
		for k, v := range labels {
			cfg.Labels[k] = v
		}
		cctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		created, err := c.docker.ContainerCreate(cctx, &cfg, s.HostConfig, nil, nil, c.name)
		cancel()
		if cerrdefs.IsConflict(err) && attempt == 0 {
			continue // created meanwhile by another Start: adopt it
		}
		if err != nil {
			return "", fmt.Errorf("pgserver: create container %s: %w", c.name, err)
		}
		c.log.Info("created the postgres container", "container", c.name, "id", created.ID[:12])
		return created.ID, c.start(ctx, created.ID)
	}
}

// inspect returns the container ref and whether it exists.
func (c *Container) inspect(ctx context.Context, ref string) (container.InspectResponse, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	info, err := c.docker.ContainerInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, false, nil
	}
	if err != nil {
		return container.InspectResponse{}, false, fmt.Errorf("pgserver: inspect container %s: %w", ref, err)
	}
	return info, true, nil
}

func (c *Container) start(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := c.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("pgserver: start container %s: %w", c.name, err)
	}
	return nil
}

// waitReady polls until the server accepts a password connection, its
// container exits or restarts, or ctx ends.
func (c *Container) waitReady(ctx context.Context) error {
	first, _, err := c.inspect(ctx, c.id)
	if err != nil {
		return err
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, c.URL("postgres"))
		cancel()
		if err == nil {
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			err = conn.Close(closeCtx)
			cancel()
			return err
		}
		lastErr = err
		info, found, err := c.inspect(ctx, c.id)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: container %s was removed during start-up", ErrContainerExited, c.name)
		case info.RestartCount > first.RestartCount || (!info.State.Running && !info.State.Restarting):
			return fmt.Errorf("%w: %s (state %s, exit code %d, restarts %d)%s", ErrContainerExited, c.name,
				info.State.Status, info.State.ExitCode, info.RestartCount, c.logTail(ctx))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgserver: postgres in %s not ready: %w (last attempt: %v)%s", c.name, ctx.Err(), lastErr, c.logTail(ctx))
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of the container's output, for error
// messages.
func (c *Container) logTail(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dockerTimeout)
	defer cancel()
	rc, err := c.docker.ContainerLogs(ctx, c.id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "15"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil || out.Len() == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	return "\ncontainer " + c.name + " output ends with:\n  " + strings.Join(lines, "\n  ")
}

// ID returns the ID of the container.
func (c *Container) ID() string { return c.id }

// Name returns the name of the container.
func (c *Container) Name() string { return c.name }

// Addr returns the address the server listens on.
func (c *Container) Addr() netip.AddrPort { return c.addr }

// URL returns a connection string (for pgx and libpq's programs) for
// database db on the server's TCP address, as the superuser with its
// password: with TLS (ContainerConfig.TLSDir) sslmode=verify-full against
// the cluster CA in TLSDir, without it sslmode=disable.
func (c *Container) URL(db string) string {
	q := url.Values{"sslmode": {"disable"}}
	if c.caFile != "" {
		q = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {c.caFile}}
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(Superuser, c.password),
		Host:     c.addr.String(),
		Path:     "/" + db,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// TLSURL returns the connection string dbURL (a postgres:// or
// postgresql:// URL, such as Container.URL) as the host whose cluster CA
// certificate is the file caFile (an absolute path) uses it: sslmode
// verify-full, sslrootcert caFile, the rest unchanged. A host that
// reaches the PostgreSQL of another host gives its own <data>/tls/ca.crt.
func TLSURL(dbURL, caFile string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("pgserver: TLS URL: %w", withoutURL(err))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("pgserver: TLS URL: scheme %q, want postgres or postgresql", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("pgserver: TLS URL: no host")
	}
	if !filepath.IsAbs(caFile) {
		return "", fmt.Errorf("pgserver: TLS URL: CA file %q is not an absolute path", caFile)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("pgserver: TLS URL: query: %w", err)
	}
	q.Set("sslmode", "verify-full")
	q.Set("sslrootcert", caFile)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// withoutURL returns err of url.Parse without the URL, which holds a
// password.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// CreateDatabase creates database name unless it exists.
func (c *Container) CreateDatabase(ctx context.Context, name string) error {
	return createDatabase(ctx, c.URL("postgres"), name)
}

// DropDatabase drops database name, closing its connections, if it exists.
func (c *Container) DropDatabase(ctx context.Context, name string) error {
	return dropDatabase(ctx, c.URL("postgres"), name)
}

// Stop shuts the server down (a fast shutdown: open transactions are
// rolled back, the data is flushed; Docker kills it after 30 seconds) and
// removes its container. The data stays in the directory; the next
// StartContainer makes a new container on it. ctx bounds the whole stop.
// Stop is idempotent; later calls return the first result.
func (c *Container) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.log.Info("stopping postgres", "container", c.name)
		c.stopErr = stopAndRemove(ctx, c.docker, c.id)
	})
	return c.stopErr
}

// stopAndRemove stops container id with its stop signal and removes it; a
// container that is gone already is no error.
func stopAndRemove(ctx context.Context, docker *client.Client, id string) error {
	sctx, cancel := context.WithTimeout(ctx, stopGrace+dockerTimeout)
	err := docker.ContainerStop(sctx, id, container.StopOptions{})
	cancel()
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("pgserver: stop container %s: %w", id, err)
	}
	rctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := docker.ContainerRemove(rctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("pgserver: remove container %s: %w", id, err)
	}
	return nil
}
