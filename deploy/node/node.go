// Package node is a Gantry node's data dir: the layout of its files and the
// identity that every role of the node shares (the cluster ID, the host ID,
// the platform's host token, the secrets key and the git server's host
// key). `gantryd up` and the role commands (`gantryd host`, `controller`,
// `scheduler`, `router`, `gitreceiver`, `logaggregator`, `etcd`) open the
// same data dir with Open and fill their roles' Configs from it, so a role
// run as its own process and the same role inside `gantryd up` are
// configured alike. Secrets stay in files (mode 0600): they are never
// passed on a command line.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
)

// Layout of a data dir, relative to it.
const (
	// ClusterIDFile holds the cluster ID, made once ("c-" and 8 hex
	// digits).
	ClusterIDFile = "cluster-id"
	// HostIDFile holds the host ID, made once ("host-" and 8 hex digits).
	HostIDFile = "host-id"
	// HostTokenFile (mode 0600) holds the platform's host token: the
	// bearer token between the roles (host agent API, blobs, logs, the
	// git receiver's calls to the controller, the router's metrics).
	HostTokenFile = "host-token"
	// SecretsKeyFile (mode 0600) seals the private keys of the routes'
	// certificates and the ACME account key (see layer0/sealed).
	SecretsKeyFile = "secrets.key"
	// AdminEnvFile (mode 0600) holds GANTRY_URL= and GANTRY_TOKEN= for the
	// CLI; the controller role writes it.
	AdminEnvFile = "admin.env"
	// GitHostKeyFile is the git server's SSH host key.
	GitHostKeyFile = "git/ssh_host_ed25519_key"
	// GitReposDir holds the apps' bare repositories.
	GitReposDir = "git/repos"
	// EtcdDir is the embedded etcd member's data.
	EtcdDir = "etcd"
	// PostgresDir is the private PostgreSQL's data.
	PostgresDir = "postgres"
	// HostStateDir is the host agent's state (lease, artifact cache).
	HostStateDir = "host"
	// LogsDir holds the log aggregator's files.
	LogsDir = "logs"
	// TLSDir holds the cluster CA and the host's certificate (see
	// layer0/clustertls): mutual TLS for etcd's clients and peers.
	TLSDir = "tls"
	// MetricsFile holds the controller's metric history.
	MetricsFile = "metrics.gob"
	// DatabaseURLFile (mode 0600) holds the connection string of the
	// node's PostgreSQL container, which the controller's container reads
	// (`gantryd up`, as containers).
	DatabaseURLFile = "database-url"
	// BinDir holds the copy of gantryd that the host agent's container
	// mounts into slug containers (`gantryd up`, as containers).
	BinDir = "bin"
	// lockFile serializes the creation of the identity files between the
	// processes that open the data dir at once.
	lockFile = ".identity.lock"
)

// lockTimeout bounds the wait for another process's creation of the
// identity files.
const lockTimeout = 30 * time.Second

// Node is an opened data dir and the identity it holds.
type Node struct {
	// Dir is the data dir, an absolute path.
	Dir string
	// Cluster is the cluster ID (ClusterIDFile).
	Cluster string
	// HostID is the host's ID (HostIDFile).
	HostID string
	// HostToken is the platform's host token (HostTokenFile).
	HostToken string
	// SecretsKey is the sealed.KeySize-byte key of SecretsKeyFile.
	SecretsKey []byte
	// GitHostKey is the public half of the git server's host key
	// (GitHostKeyFile), in the authorized_keys format.
	GitHostKey string
}

// Open opens the data dir at dir, creating it (mode 0700) and its identity
// files when they are missing. Processes that open the same new data dir at
// once get the same identity: the files are made under a lock, once.
func Open(ctx context.Context, dir string) (*Node, error) {
	if dir == "" {
		return nil, errors.New("data dir: no path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	unlock, err := lock(ctx, filepath.Join(abs, lockFile))
	if err != nil {
		return nil, err
	}
	defer unlock()
	n := &Node{Dir: abs}
	if n.Cluster, err = readOrCreate(n.Path(ClusterIDFile), func() (string, error) {
		h, err := randomHex(4)
		return "c-" + h, err
	}); err != nil {
		return nil, err
	}
	if _, err := keyspace.New(n.Cluster); err != nil {
		return nil, fmt.Errorf("%s: %w", n.Path(ClusterIDFile), err)
	}
	if n.HostID, err = readOrCreate(n.Path(HostIDFile), func() (string, error) {
		h, err := randomHex(4)
		return "host-" + h, err
	}); err != nil {
		return nil, err
	}
	if n.HostToken, err = readOrCreate(n.Path(HostTokenFile), func() (string, error) { return randomHex(32) }); err != nil {
		return nil, err
	}
	if n.SecretsKey, err = sealed.LoadKey(n.Path(SecretsKeyFile)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(n.Path(GitHostKeyFile)), 0o700); err != nil {
		return nil, fmt.Errorf("create git dir: %w", err)
	}
	if n.GitHostKey, err = gitreceiver.HostPublicKey(n.Path(GitHostKeyFile)); err != nil {
		return nil, err
	}
	// The cluster CA is made with the rest of the identity, under the
	// lock, so roles started at once trust one CA.
	if err := clustertls.Init(n.Path(TLSDir), clustertls.Host{ID: n.HostID, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}); err != nil {
		return nil, fmt.Errorf("the node's TLS certificates: %w", err)
	}
	return n, nil
}

// Path returns the path of name (one of the layout's constants) in the
// data dir.
func (n *Node) Path(name string) string {
	return filepath.Join(n.Dir, filepath.FromSlash(name))
}

// lock takes an exclusive lock on file (flock), waiting for another
// process's at most lockTimeout; unlock releases it. The kernel releases
// the lock of a process that dies.
func lock(ctx context.Context, file string) (unlock func(), err error) {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock data dir %s: %w", file, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock data dir %s: another process holds it: %w", file, ctx.Err())
		case <-tick.C:
		}
	}
}

// readOrCreate returns the trimmed content of file, creating it with the
// value of gen (mode 0600) when it does not exist or is empty.
func readOrCreate(file string, gen func() (string, error)) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	v, err := gen()
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(file, []byte(v+"\n"), 0o600); err != nil {
		return "", err
	}
	return v, nil
}

// writeFileAtomic writes data to a temporary file next to file and renames
// it into place, so a crash never leaves a half-written file.
func writeFileAtomic(file string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
