package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The files of a host in a cluster of several, relative to the data dir.
const (
	// JoinedFile marks the data dir of a host that joined a cluster
	// (`gantryd join`): it runs no PostgreSQL of its own (the cluster's is
	// in DatabaseURLFile) and an etcd member only when it got one. It
	// holds what the join said (JSON), for people.
	JoinedFile = "joined"
	// EtcdEndpointsFile lists the client URLs of the cluster's etcd
	// members, one per line, this host's own member first: the endpoints
	// of this host's roles. `gantryd up` writes it again from the member
	// list at each start.
	EtcdEndpointsFile = "etcd-endpoints"
	// EtcdInitialClusterFile holds the --initial-cluster of a member added
	// to a running cluster (name=peerURL,...); its etcd reads it at its
	// first start, when its data dir holds no member yet.
	EtcdInitialClusterFile = "etcd-initial-cluster"
)

// SharedFiles are the files that every host of a cluster has alike: a
// joining host gets them from the cluster. The cluster CA's key is among
// them: every host can issue its own certificate, and any host's
// controller can take the next host in. So is the admin token.
var SharedFiles = []string{
	ClusterIDFile, HostTokenFile, SecretsKeyFile, GitHostKeyFile,
	TLSDir + "/ca.crt", TLSDir + "/ca.key",
	// The CLI's admin token: the cluster has one (`gantryd up` brings
	// its GANTRY_URL to this host's API).
	AdminEnvFile,
}

// WriteJoined lays out the data dir dir of a host that joins a cluster:
// files (names of SharedFiles), the database URL, the etcd endpoints and
// JoinedFile with joined. It refuses a data dir that has an identity
// already (a host of a cluster, or a single node).
func WriteJoined(dir string, files map[string][]byte, databaseURL string, endpoints []string, joined []byte) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := CheckNew(abs); err != nil {
		return err
	}
	for name := range files {
		if !slices.Contains(SharedFiles, name) {
			return fmt.Errorf("the cluster sent the file %q, which a joining host does not take", name)
		}
	}
	for _, name := range SharedFiles {
		if len(files[name]) == 0 {
			return fmt.Errorf("the cluster did not send %s", name)
		}
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	write := func(name string, b []byte) error {
		path := filepath.Join(abs, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
		}
		return writeFileAtomic(path, b, 0o600)
	}
	// The cluster ID last: its presence says the rest is there.
	for _, name := range SharedFiles[1:] {
		if err := write(name, files[name]); err != nil {
			return err
		}
	}
	for name, b := range map[string][]byte{
		DatabaseURLFile: []byte(databaseURL + "\n"), EtcdEndpointsFile: []byte(strings.Join(endpoints, "\n") + "\n"), JoinedFile: joined,
	} {
		if err := write(name, b); err != nil {
			return err
		}
	}
	return write(ClusterIDFile, files[ClusterIDFile])
}

// CheckNew refuses a data dir dir that has an identity already (a host
// of a cluster, or a single node): a host joins with a new one.
func CheckNew(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, ClusterIDFile))
	switch {
	case err == nil:
		return fmt.Errorf("data dir %s belongs to cluster %s already: start it with gantryd up --data %s", dir, strings.TrimSpace(string(b)), dir)
	case errors.Is(err, os.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
}

// Joined reports whether the host joined a cluster (JoinedFile), rather
// than made it.
func (n *Node) Joined() bool {
	_, err := os.Stat(n.Path(JoinedFile))
	return err == nil
}

// EtcdEndpoints returns the endpoints of EtcdEndpointsFile, or nil when
// there is none.
func (n *Node) EtcdEndpoints() ([]string, error) {
	b, err := os.ReadFile(n.Path(EtcdEndpointsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", n.Path(EtcdEndpointsFile), err)
	}
	return strings.Fields(string(b)), nil
}

// WriteEtcdEndpoints writes EtcdEndpointsFile.
func (n *Node) WriteEtcdEndpoints(endpoints []string) error {
	return writeFileAtomic(n.Path(EtcdEndpointsFile), []byte(strings.Join(endpoints, "\n")+"\n"), 0o600)
}

// EtcdInitialCluster returns the content of EtcdInitialClusterFile, or ""
// when there is none.
func (n *Node) EtcdInitialCluster() (string, error) {
	b, err := os.ReadFile(n.Path(EtcdInitialClusterFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", n.Path(EtcdInitialClusterFile), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteEtcdInitialCluster writes EtcdInitialClusterFile.
func (n *Node) WriteEtcdInitialCluster(initial string) error {
	return writeFileAtomic(n.Path(EtcdInitialClusterFile), []byte(initial+"\n"), 0o600)
}

// EtcdMember reports whether the host runs an etcd member: the host that
// made the cluster does, a joined host when it got one (it has a member's
// data, or the initial cluster to start one).
func (n *Node) EtcdMember() bool {
	if !n.Joined() {
		return true
	}
	for _, name := range []string{EtcdInitialClusterFile, EtcdDir + "/member"} {
		if _, err := os.Stat(n.Path(name)); err == nil {
			return true
		}
	}
	return false
}

// AdvertiseFile holds the address the host was last started with
// (`gantryd up --advertise`), its default at the next start: a reboot
// runs `gantryd up --data DIR` and the host comes back at its address.
const AdvertiseFile = "advertise"

// Advertise returns the address a start of the data dir dir uses: flag
// when set (it is then written to AdvertiseFile, once the data dir
// exists), else the one AdvertiseFile holds, else dflt (flag's default).
func Advertise(dir, flag string, set bool) (string, error) {
	path := filepath.Join(dir, AdvertiseFile)
	if !set {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return flag, nil
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", path, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if net.ParseIP(flag) == nil {
		return flag, nil // refused with the other flags
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	if err := writeFileAtomic(path, []byte(flag+"\n"), 0o600); err != nil {
		return "", err
	}
	return flag, nil
}
