package gitreceiver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/layer0/reuseport"
)

// KeyChecker says whether a public key may push. The controller's registered
// keys satisfy it.
type KeyChecker interface {
	Authorized(ctx context.Context, key gossh.PublicKey) (bool, error)
}

// AppChecker looks up apps.
type AppChecker interface {
	// App returns the app named name, or an error wrapping ErrNoApp when
	// there is none.
	App(ctx context.Context, name string) (App, error)
}

// Builder builds and deploys one pushed commit. It writes human output
// (`-----> ...` lines) to out and returns an error when the push must be
// rejected; the error's message is shown to the user as the last line.
type Builder interface {
	Build(ctx context.Context, req BuildRequest, out io.Writer) error
}

// BuildRequest describes one push to build.
type BuildRequest struct {
	App    string
	Ref    string // e.g. refs/heads/main
	Commit string // the pushed commit ID
	// Source returns a tar stream of the commit's tree (submodules left
	// out). The caller closes it.
	Source func(ctx context.Context) (io.ReadCloser, error)
}

// Config configures a Server.
type Config struct {
	// Addr is the SSH listen address, e.g. "127.0.0.1:2222"; required for
	// Run.
	Addr string
	// HostKeyFile holds the server's ed25519 host key; it is created on first
	// start (mode 0600) and kept, so clients' known_hosts stay valid.
	// Required.
	HostKeyFile string
	// RepoDir holds one bare repository per app (<app>.git) and the hook
	// socket; required.
	RepoDir string
	// Keys authorises pushers; required.
	Keys KeyChecker
	// Apps says which apps exist; required.
	Apps AppChecker
	// SweepInterval is how often the repositories of apps that no longer
	// exist are removed (also once at start); zero means 5 minutes.
	SweepInterval time.Duration
	// Builder builds pushes; required.
	Builder Builder
	// HookCommand is the argv of the proc-receive hook; empty means this
	// executable with "gitreceiver hook".
	HookCommand []string
	// Git is the git binary; empty means "git" from PATH.
	Git string
	// PushTimeout bounds one push, build included; zero means 30 minutes.
	PushTimeout time.Duration
	// HandshakeTimeout bounds the time from accepting a connection to its
	// first session, SSH handshake and authentication included; zero means
	// 30 seconds.
	HandshakeTimeout time.Duration
	// IdleTimeout ends an authenticated connection that has sent and
	// received nothing for this long (a build that prints nothing for
	// this long too); zero means 10 minutes.
	IdleTimeout time.Duration
	// MaxUnauthenticated caps the connections not yet authenticated, in
	// total; more are closed at once. Zero means 64.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerSource caps the connections not yet
	// authenticated from one IP address; zero means 8.
	MaxUnauthenticatedPerSource int
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// ReusePort binds Addr with SO_REUSEPORT (Run), so that a new job of
	// the git receiver can listen on the port of the old one while a
	// deployment replaces it.
	ReusePort bool
	// Ready, when not nil, is called once Run listens: the job's
	// readiness signal.
	Ready func()
}

// Validate reports missing fields.
func (c Config) Validate() error {
	var errs []error
	if c.HostKeyFile == "" {
		errs = append(errs, errors.New("no host key file"))
	}
	if c.RepoDir == "" {
		errs = append(errs, errors.New("no repository dir"))
	}
	if c.Keys == nil || c.Apps == nil || c.Builder == nil {
		errs = append(errs, errors.New("keys, apps and builder are required"))
	}
	if c.PushTimeout < 0 || c.HandshakeTimeout < 0 || c.IdleTimeout < 0 || c.SweepInterval < 0 {
		errs = append(errs, errors.New("timeouts and intervals must not be negative"))
	}
	if c.MaxUnauthenticated < 0 || c.MaxUnauthenticatedPerSource < 0 {
		errs = append(errs, errors.New("connection caps must not be negative"))
	}
	return errors.Join(errs...)
}

// Server is the git-over-SSH server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ssh    *ssh.Server
	gate   *gate
	hookLn net.Listener

	mu     sync.Mutex
	pushes map[string]*push // by push ID

	// repoMu is held while a repository is created, replaced or removed.
	repoMu sync.Mutex
}

// push is one git receive-pack in progress.
type push struct {
	app  string
	repo string
	ctx  context.Context // ends when the client disconnects
}

// New prepares a server: the host key, the repository dir and the hook
// socket. It cleans up what it made when it fails.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gitreceiver: %w", err)
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if cfg.PushTimeout == 0 {
		cfg.PushTimeout = 30 * time.Minute
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Minute
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxUnauthenticated == 0 {
		cfg.MaxUnauthenticated = 64
	}
	if cfg.MaxUnauthenticatedPerSource == 0 {
		cfg.MaxUnauthenticatedPerSource = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.HookCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("gitreceiver: find own executable for the hook: %w", err)
		}
		cfg.HookCommand = []string{exe, "gitreceiver", "hook"}
	}
	if err := os.MkdirAll(cfg.RepoDir, 0o700); err != nil {
		return nil, fmt.Errorf("gitreceiver: create %s: %w", cfg.RepoDir, err)
	}
	signer, err := loadOrCreateHostKey(cfg.HostKeyFile)
	if err != nil {
		return nil, err
	}
	// A socket of this process's own: while a deployment replaces the
	// git receiver, two of them share the directory, and each push's
	// hooks reach the one that runs the push.
	removeStaleHookSockets(cfg.RepoDir, cfg.Logger)
	sock := filepath.Join(cfg.RepoDir, ".hook-"+newID()[:8]+".sock")
	hookLn, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("gitreceiver: listen on hook socket %s: %w", sock, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hookLn: hookLn, pushes: map[string]*push{}, gate: newGate(cfg, cfg.Logger)}
	s.ssh = &ssh.Server{
		Handler:          s.handleSession,
		HostSigners:      []ssh.Signer{signer},
		PublicKeyHandler: s.authorize,
		Version:          "Gantry",
		IdleTimeout:      cfg.IdleTimeout,
		ConnCallback:     rememberConn,
		ChannelHandlers:  map[string]ssh.ChannelHandler{"session": sessionHandler},
	}
	return s, nil
}

// Run serves on cfg.Addr until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := reuseport.Listen(ctx, cfg.Addr, cfg.ReusePort)
	if err != nil {
		s.Close()
		return fmt.Errorf("gitreceiver: listen on %s: %w", cfg.Addr, err)
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return s.Serve(ctx, ln)
}

// Serve accepts SSH connections on ln until ctx is done, then closes the
// server. Connections beyond the caps on unauthenticated ones are closed as
// they are accepted.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.Info("git receiver listening", "addr", ln.Addr().String(), "repos", s.cfg.RepoDir,
		"handshake_timeout", s.cfg.HandshakeTimeout, "idle_timeout", s.cfg.IdleTimeout,
		"max_unauthenticated", s.cfg.MaxUnauthenticated, "max_unauthenticated_per_source", s.cfg.MaxUnauthenticatedPerSource)
	ln = &gatedListener{Listener: ln, gate: s.gate}
	go s.serveHooks(ctx)
	sctx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go s.sweepRepos(sctx)
	errc := make(chan error, 1)
	go func() { errc <- s.ssh.Serve(ln) }()
	select {
	case <-ctx.Done():
		s.Close()
		<-errc
		return nil
	case err := <-errc:
		s.Close()
		if errors.Is(err, ssh.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("gitreceiver: serve: %w", err)
	}
}

// Close stops the server; pushes in progress are cut off. It is idempotent.
func (s *Server) Close() {
	s.ssh.Close()
	s.hookLn.Close()
}

// lookupTimeout bounds a key or app lookup.
const lookupTimeout = 10 * time.Second

func (s *Server) authorize(ctx ssh.Context, key ssh.PublicKey) bool {
	cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ok, err := s.cfg.Keys.Authorized(cctx, key)
	if err != nil {
		s.log.Error("check ssh key", "fingerprint", gossh.FingerprintSHA256(key), "err", err)
		return false
	}
	if !ok {
		s.log.Info("refused unregistered ssh key", "fingerprint", gossh.FingerprintSHA256(key), "remote", ctx.RemoteAddr().String())
	}
	return ok
}

// HostPublicKey returns the public half of the host key in file, in the
// authorized_keys format ("ssh-ed25519 AAAA..."), creating the key as Run
// would when the file does not exist yet. The controller reports it so
// that clients can pin it before their first push.
func HostPublicKey(file string) (string, error) {
	signer, err := loadOrCreateHostKey(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}

func loadOrCreateHostKey(file string) (ssh.Signer, error) {
	if b, err := os.ReadFile(file); err == nil {
		signer, err := gossh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("gitreceiver: host key %s: %w", file, err)
		}
		return signer, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("gitreceiver: read host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("gitreceiver: generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "gantry git receiver")
	if err != nil {
		return nil, fmt.Errorf("gitreceiver: encode host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("gitreceiver: host key dir: %w", err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("gitreceiver: write host key: %w", err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("gitreceiver: host key signer: %w", err)
	}
	return signer, nil
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// removeStaleHookSockets removes the hook sockets of dir that no process
// answers on (left by a git receiver that was killed).
func removeStaleHookSockets(dir string, log *slog.Logger) {
	socks, _ := filepath.Glob(filepath.Join(dir, ".hook*.sock"))
	for _, p := range socks {
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("cannot remove a stale hook socket", "path", p, "err", err)
			}
		}
	}
}
