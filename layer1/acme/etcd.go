package acme

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// challengeTTL is the lease of a challenge answer, in seconds: an answer
// left behind by a controller that stopped mid-order ends with it.
const challengeTTL = 600

// etcdTimeout bounds each etcd call.
const etcdTimeout = 10 * time.Second

// EtcdChallenges publishes challenge answers under the acme/challenges/
// keys of a cluster, which every router watches.
type EtcdChallenges struct {
	Etcd  *clientv3.Client
	Space keyspace.Space
}

var _ ChallengeStore = EtcdChallenges{}

// PutChallenge puts the answer for token under a lease of challengeTTL.
func (e EtcdChallenges) PutChallenge(ctx context.Context, token, keyAuth string) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	lease, err := e.Etcd.Grant(ctx, challengeTTL)
	if err != nil {
		return fmt.Errorf("lease for challenge %s: %w", token, err)
	}
	if _, err := e.Etcd.Put(ctx, e.Space.ACMEChallenge(token), keyAuth, clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("put challenge %s: %w", token, err)
	}
	return nil
}

// DeleteChallenge deletes the answer for token.
func (e EtcdChallenges) DeleteChallenge(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := e.Etcd.Delete(ctx, e.Space.ACMEChallenge(token)); err != nil {
		return fmt.Errorf("delete challenge %s: %w", token, err)
	}
	return nil
}
