package up

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/layer0/etcdmember"
)

// startEtcd starts or adopts this host's etcd member, when it runs one,
// and returns a client of the cluster's members (this host's first), once
// they answer. A joining host (Config.Joining) first asks for a member:
// the first MaxMembers hosts get one, added as a learner, which is
// promoted once its container runs. At every start the member list gives
// the endpoints again (node.EtcdEndpointsFile), which the agent and
// through it the system jobs use.
func (p *platform) startEtcd(ctx context.Context, image string) (*clientv3.Client, error) {
	cfg, n := p.cfg, p.n
	peerURL, localURL := "https://"+cfg.EtcdPeerAddr, "https://"+cfg.EtcdClientAddr
	known, err := n.EtcdEndpoints()
	if err != nil {
		return nil, err
	}
	if cfg.Joining && !n.EtcdMember() {
		if err := p.askForMember(ctx, known, peerURL); err != nil {
			return nil, err
		}
	}
	member := n.EtcdMember()
	endpoints := slices.DeleteFunc(slices.Clone(known), func(u string) bool { return u == localURL })
	if member {
		if _, err := p.ensure(ctx, SystemEtcd, image, []string{"etcd", "--data", n.Dir,
			"--client-addr", cfg.EtcdClientAddr, "--peer-addr", cfg.EtcdPeerAddr}, nil, p.dataMount(), nil); err != nil {
			return nil, err
		}
		initial, err := n.EtcdInitialCluster()
		if err != nil {
			return nil, err
		}
		if initial != "" && len(endpoints) > 0 {
			// A learner until promoted: the others answer for it.
			others, err := n.EtcdClient(node.EtcdClientConfig{Endpoints: endpoints})
			if err != nil {
				return nil, fmt.Errorf("connect to etcd: %w", err)
			}
			perr := etcdmember.Promote(ctx, others, peerURL)
			others.Close()
			if perr != nil {
				return nil, perr
			}
			if err := os.Remove(n.Path(node.EtcdInitialClusterFile)); err != nil {
				return nil, fmt.Errorf("the member is promoted: %w", err)
			}
			p.log.Info("this host's etcd member votes now", "peer_url", peerURL)
		}
		endpoints = append([]string{localURL}, endpoints...)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("this host runs no etcd member and knows no other's: its data dir lacks " + node.EtcdEndpointsFile)
	}
	etcd, err := n.EtcdClient(node.EtcdClientConfig{Endpoints: endpoints})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}
	if err := waitEtcd(ctx, etcd); err != nil {
		etcd.Close()
		return nil, err
	}
	own := ""
	if member {
		own = peerURL
		if err := etcdmember.UpdatePeer(ctx, etcd, n.HostID, peerURL); err != nil {
			p.log.Warn("could not update this host's etcd peer URL", "err", err)
		}
	}
	urls, err := etcdmember.ClientURLs(ctx, etcd, own)
	if err != nil {
		etcd.Close()
		return nil, err
	}
	if err := n.WriteEtcdEndpoints(urls); err != nil {
		etcd.Close()
		return nil, err
	}
	p.etcdEndpoints = urls
	etcd.SetEndpoints(urls...)
	return etcd, nil
}

// askForMember adds this joining host's member to the cluster's etcd
// when it has fewer than etcdmember.MaxMembers (node.EtcdInitialClusterFile
// then holds the initial cluster its member starts with); a later host is
// a client only.
func (p *platform) askForMember(ctx context.Context, known []string, peerURL string) error {
	if len(known) == 0 {
		return errors.New("a joining host needs the cluster's etcd endpoints: its data dir lacks " + node.EtcdEndpointsFile)
	}
	etcd, err := p.n.EtcdClient(node.EtcdClientConfig{Endpoints: known})
	if err != nil {
		return fmt.Errorf("connect to etcd: %w", err)
	}
	defer etcd.Close()
	m, err := etcdmember.Add(ctx, etcd, p.n.HostID, peerURL)
	if err != nil {
		return err
	}
	if m == nil {
		p.log.Info("the cluster has its etcd members: this host is a client of theirs", "members", etcdmember.MaxMembers)
		return nil
	}
	p.log.Info("this host runs an etcd member, added as a learner", "initial_cluster", m.InitialCluster)
	return p.n.WriteEtcdInitialCluster(m.InitialCluster)
}

// startPostgres starts or adopts the cluster's PostgreSQL on this host
// (the host that made the cluster), makes sure the database exists,
// writes its URL for the controllers (node.DatabaseURLFile) and returns
// it.
func (p *platform) startPostgres(ctx context.Context) (string, error) {
	cfg, n := p.cfg, p.n
	pg, err := pgserver.StartContainer(ctx, pgserver.ContainerConfig{
		Dir: n.Path(node.PostgresDir), Docker: p.docker, Cluster: n.Cluster, HostID: n.HostID, Addr: cfg.PostgresAddr,
		TLSDir: n.Path(node.TLSDir), Logger: p.log.With("component", "postgres"),
	})
	if err != nil {
		return "", err
	}
	if err := pg.CreateDatabase(ctx, "gantry"); err != nil {
		return "", err
	}
	dbURL := pg.URL("gantry")
	old, err := os.ReadFile(n.Path(node.DatabaseURLFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the database URL: %w", err)
	}
	if err := n.WriteDatabaseURL(dbURL); err != nil {
		return "", err
	}
	if len(old) > 0 && strings.TrimSpace(string(old)) != dbURL {
		// The controller reads the URL when it starts (a data dir made
		// before TLS had a plaintext one, which the server now rejects).
		if err := p.restartController(ctx); err != nil {
			return "", err
		}
	}
	return dbURL, nil
}
