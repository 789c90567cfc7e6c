package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Superuser is the PostgreSQL superuser that initdb creates and that URL
// connects as.
const Superuser = "postgres"

// Layout of Config.Dir.
const (
	dataSubdir  = "pgdata"
	logFileName = "postgres.log"
	socketName  = ".s.PGSQL.5432"
	// maxSocketPath is the longest unix socket path Linux accepts
	// (sizeof(sun_path) - 1).
	maxSocketPath = 107
)

const (
	defaultStartTimeout = 60 * time.Second
	// killGrace is how long Stop waits after an immediate shutdown before it
	// kills the process group.
	killGrace = 5 * time.Second
	// opTimeout bounds CreateDatabase and DropDatabase when ctx has no
	// deadline.
	opTimeout = 30 * time.Second
)

var (
	// ErrAlreadyRunning means that a live postgres already serves the data
	// directory.
	ErrAlreadyRunning = errors.New("a PostgreSQL server is already running on this directory")
	// ErrSocketPathTooLong means that Config.Dir is too long to hold the
	// server's unix socket.
	ErrSocketPathTooLong = errors.New("unix socket path too long")
)

// Config configures Start.
type Config struct {
	// Dir is the server's directory: the cluster files go to Dir/pgdata, the
	// unix socket to Dir and the server output to Dir/postgres.log. It is
	// created (mode 0700) when missing. Required. Its absolute path plus
	// "/.s.PGSQL.5432" must fit in 107 bytes.
	Dir string
	// Logger receives progress messages. Nil discards them.
	Logger *slog.Logger
	// BinDir is the directory holding initdb and postgres. Empty means
	// FindBinaries.
	BinDir string
	// DisableFsync turns fsync off (and makes initdb skip syncing): much
	// faster, but a machine crash can lose or corrupt the data. Meant for
	// tests. False keeps fsync on.
	DisableFsync bool
	// StartTimeout bounds Start: initdb (first start) plus the wait until
	// the server accepts connections. Zero means 60 seconds.
	StartTimeout time.Duration
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("pgserver: Dir is required")
	}
	if c.StartTimeout < 0 {
		return fmt.Errorf("pgserver: StartTimeout %s is negative", c.StartTimeout)
	}
	if strings.ContainsAny(c.Dir, "\",") {
		return fmt.Errorf("pgserver: Dir %q must not contain '\"' or ','", c.Dir)
	}
	return nil
}

// Server is a running postgres process.
type Server struct {
	dir     string
	log     *slog.Logger
	logFile *os.File
	pid     int

	done    chan struct{} // closed when postgres has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start runs initdb when Dir holds no cluster yet, starts postgres and waits
// until it accepts connections. The caller must call Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgserver: resolve %s: %w", cfg.Dir, err)
	}
	if sock := filepath.Join(dir, socketName); len(sock) > maxSocketPath {
		return nil, fmt.Errorf("pgserver: %w: %s is %d bytes, the limit is %d; use a shorter directory than %s",
			ErrSocketPathTooLong, sock, len(sock), maxSocketPath, dir)
	}
	bins, err := binaries(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgserver: create %s: %w", dir, err)
	}
	pgdata := filepath.Join(dir, dataSubdir)
	if err := checkNotRunning(ctx, pgdata); err != nil {
		return nil, err
	}
	cred, err := credentialFor(log, dir)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, logFileName)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgserver: open log: %w", err)
	}
	if cred != nil {
		if err := os.Chown(logPath, int(cred.Uid), int(cred.Gid)); err != nil {
			logFile.Close()
			return nil, fmt.Errorf("pgserver: chown %s: %w", logPath, err)
		}
	}
	s := &Server{dir: dir, log: log, logFile: logFile, done: make(chan struct{})}

	if err := s.initdb(ctx, bins, pgdata, cred, cfg.DisableFsync); err != nil {
		logFile.Close()
		return nil, err
	}
	if err := s.start(bins, pgdata, cred, cfg.DisableFsync); err != nil {
		logFile.Close()
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), killGrace)
		defer stopCancel()
		_ = s.Stop(stopCtx)
		return nil, err
	}
	log.Info("postgres ready", "dir", dir, "pid", s.pid, "fsync", !cfg.DisableFsync)
	return s, nil
}

func binaries(binDir string) (Binaries, error) {
	if binDir != "" {
		return BinariesIn(binDir)
	}
	return FindBinaries()
}

// checkNotRunning fails when postmaster.pid names a live postgres process.
// A stale file from a dead process is left to postgres, which replaces it.
// A postgres that is shutting down (status "stopping" in postmaster.pid, as
// when the gantryd that started it was killed and it got its parent-death
// signal) is waited for until ctx ends.
func checkNotRunning(ctx context.Context, pgdata string) error {
	for {
		pid, status, err := livePostmaster(pgdata)
		if err != nil || pid == 0 {
			return err
		}
		if status != "stopping" {
			return fmt.Errorf("pgserver: %w: postgres pid %d serves %s (see its postmaster.pid); stop it first",
				ErrAlreadyRunning, pid, pgdata)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgserver: %w: postgres pid %d is still shutting down %s", ErrAlreadyRunning, pid, pgdata)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// livePostmaster returns the pid of the live postgres process that
// postmaster.pid names and the status line of the file ("ready",
// "stopping", ...), or 0 when the file is missing or stale.
func livePostmaster(pgdata string) (int, string, error) {
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("pgserver: read postmaster.pid: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, "", nil
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return 0, "", nil // no such process: a stale file
	}
	if strings.TrimSpace(string(comm)) != "postgres" {
		return 0, "", nil // the pid was reused by another program
	}
	// The eighth line is the postmaster's status (PostgreSQL 10 and later).
	status := ""
	if len(lines) > 7 {
		status = strings.TrimSpace(lines[7])
	}
	return pid, status, nil
}

func (s *Server) initdb(ctx context.Context, bins Binaries, pgdata string, cred *syscall.Credential, noSync bool) error {
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); err == nil {
		return nil
	}
	// initdb removes what it created when it fails; a directory without
	// PG_VERSION is the remains of an interrupted initdb.
	if err := os.RemoveAll(pgdata); err != nil {
		return fmt.Errorf("pgserver: remove incomplete %s: %w", pgdata, err)
	}
	s.log.Info("initdb", "dir", pgdata, "binary", bins.InitDB)
	args := []string{
		"--pgdata=" + pgdata,
		"--username=" + Superuser,
		"--encoding=UTF8",
		"--locale=C",
		"--auth-local=trust",
		"--auth-host=reject",
	}
	if noSync {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, bins.InitDB, args...)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	// On timeout, kill initdb with the bootstrap postgres it runs.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgserver: initdb %s: %w%s", pgdata, err, s.logTail())
	}
	return nil
}

func (s *Server) start(bins Binaries, pgdata string, cred *syscall.Credential, noFsync bool) error {
	args := []string{
		"-D", pgdata,
		"-c", "listen_addresses=",
		"-c", `unix_socket_directories="` + s.dir + `"`,
		"-c", "unix_socket_permissions=0700",
	}
	for _, setting := range settings(noFsync) {
		args = append(args, "-c", setting)
	}
	cmd := exec.Command(bins.Postgres, args...)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: cred,
		// A fast shutdown when this process dies without calling Stop.
		Pdeathsig: syscall.SIGINT,
	}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits, so that thread must live as long as the child: this
		// goroutine keeps it locked (never unlocked) until postgres exits.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgserver: start postgres: %w", err)
	}
	s.pid = cmd.Process.Pid
	return nil
}

// settings are the server settings ("name=value") of both modes.
func settings(noFsync bool) []string {
	out := []string{
		// Bounds the WAL (pg_wal) to about 64 MiB: a checkpoint starts
		// when it passes max_wal_size, and segments beyond min_wal_size
		// are removed rather than recycled. PostgreSQL's defaults (1 GiB,
		// 80 MiB) let every blob written since the last checkpoint
		// pile up there.
		"max_wal_size=64MB",
		"min_wal_size=32MB",
	}
	if noFsync {
		out = append(out, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	}
	return out
}

// waitReady polls until postgres accepts connections, exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attemptCtx, s.URL("postgres"))
		cancel()
		if err == nil {
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			err = conn.Close(closeCtx)
			cancel()
			return err
		}
		lastErr = err
		select {
		case <-s.done:
			return fmt.Errorf("pgserver: postgres exited during start-up: %v%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("pgserver: postgres not ready: %w (last attempt: %v)%s", ctx.Err(), lastErr, s.logTail())
		case <-tick.C:
		}
	}
}

// Dir returns the absolute path of the server's directory.
func (s *Server) Dir() string { return s.dir }

// LogPath returns the path of the file holding the server's output.
func (s *Server) LogPath() string { return filepath.Join(s.dir, logFileName) }

// Done returns a channel that is closed when postgres has exited, after
// Stop or on its own.
func (s *Server) Done() <-chan struct{} { return s.done }

// URL returns a pgx connection string for database db on the server's unix
// socket, as the superuser.
func (s *Server) URL(db string) string { return SocketURL(s.dir, db) }

// SocketURL returns the connection string for database db, as the
// superuser, of the server whose directory (Config.Dir) is dir, whichever
// process started it. It works with pgx and with libpq's programs
// (pg_dump, pg_restore).
func SocketURL(dir, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Path:     "/" + db,
		RawQuery: url.Values{"host": {dir}, "sslmode": {"disable"}}.Encode(),
	}
	return u.String()
}

// Running reports whether a live postgres serves the server directory
// dir (Config.Dir).
func Running(dir string) bool {
	pid, _, err := livePostmaster(filepath.Join(dir, dataSubdir))
	return err == nil && pid > 0
}

// CreateDatabase creates database name unless it exists.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	return createDatabase(ctx, s.URL("postgres"), name)
}

// DropDatabase drops database name, closing its connections, if it exists.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	return dropDatabase(ctx, s.URL("postgres"), name)
}

// createDatabase creates database name unless it exists, connected as the
// superuser through url.
func createDatabase(ctx context.Context, url, name string) error {
	if name == "" {
		return errors.New("pgserver: create database: empty name")
	}
	return admin(ctx, url, "create database "+name, func(ctx context.Context, conn *pgx.Conn) error {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
			return nil
		}
		return err
	})
}

// dropDatabase drops database name, closing its connections, if it
// exists, connected as the superuser through url.
func dropDatabase(ctx context.Context, url, name string) error {
	if name == "" {
		return errors.New("pgserver: drop database: empty name")
	}
	return admin(ctx, url, "drop database "+name, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	})
}

// admin runs fn on a connection to url, the postgres database of a server.
func admin(ctx context.Context, url, what string, fn func(context.Context, *pgx.Conn) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opTimeout)
		defer cancel()
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("pgserver: %s: %w", what, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := fn(ctx, conn); err != nil {
		return fmt.Errorf("pgserver: %s: %w", what, err)
	}
	return nil
}

// Stop shuts postgres down (a fast shutdown: open transactions are rolled
// back, the data is flushed) and waits until it has exited. When ctx ends
// first, it asks for an immediate shutdown and, after a few more seconds,
// kills the process group. Stop is idempotent; later calls return the first
// result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop(ctx)
		s.logFile.Close()
	})
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	s.log.Info("stopping postgres", "pid", s.pid)
	if err := syscall.Kill(s.pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pgserver: signal postgres: %w", err)
	}
	select {
	case <-s.done:
		s.log.Info("postgres stopped", "pid", s.pid)
		return nil
	case <-ctx.Done():
	}
	s.log.Warn("postgres slow to stop; immediate shutdown", "pid", s.pid)
	_ = syscall.Kill(s.pid, syscall.SIGQUIT)
	select {
	case <-s.done:
		return fmt.Errorf("pgserver: fast shutdown did not finish in time (%w); did an immediate shutdown", ctx.Err())
	case <-time.After(killGrace):
	}
	_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	<-s.done
	return fmt.Errorf("pgserver: postgres did not stop (%w); killed its process group", ctx.Err())
}

// logTail returns the last lines of the server log, for error messages.
func (s *Server) logTail() string {
	const maxBytes, maxLines = 4096, 15
	f, err := os.Open(filepath.Join(s.dir, logFileName))
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		if _, err := f.Seek(-maxBytes, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return "\n" + filepath.Join(s.dir, logFileName) + " ends with:\n  " + strings.Join(lines, "\n  ")
}

// childEnv is the environment of initdb and postgres: ours without the
// libpq variables (PGDATA, PGHOST, ...) and with English messages.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}
