// Package etcdmember manages the etcd members of a cluster's hosts: the
// first MaxMembers hosts each run one, added by runtime reconfiguration
// (as a learner, promoted once it has caught up); a member of a host that
// is gone for good is removed, so that the next host to join replaces it.
package etcdmember

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxMembers is how many hosts run an etcd member: the first three. A
// later host is a client of theirs only.
const MaxMembers = 3

// etcdTimeout bounds one etcd request of the membership.
const etcdTimeout = 10 * time.Second

// Membership is what a host needs to start its etcd member in a running
// cluster.
type Membership struct {
	// InitialCluster lists every member, this one included, as
	// name=peerURL,...: the etcd member's --initial-cluster.
	InitialCluster string
}

// Add adds the host named name, with the etcd peer URL peerURL, to
// the cluster's members as a learner (it does not count towards the quorum
// until it is promoted, so a host that never starts its member does not
// stop the cluster's writes) when the cluster has fewer than MaxMembers
// members. It returns nil when the host is to be a client only. A member
// with the same peer URL already there (a join tried again) is reused.
func Add(ctx context.Context, etcd *clientv3.Client, name, peerURL string) (*Membership, error) {
	list, err := memberList(ctx, etcd)
	if err != nil {
		return nil, err
	}
	var mine *etcdserverpb.Member
	for _, m := range list {
		if slices.Contains(m.PeerURLs, peerURL) {
			mine = m
		}
	}
	if mine == nil {
		if len(list) >= MaxMembers {
			return nil, nil
		}
		if list, err = addLearner(ctx, etcd, peerURL); err != nil {
			return nil, err
		}
	}
	parts := make([]string, 0, len(list))
	for _, m := range list {
		n := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			n = name // not started yet: its name is still empty
		}
		if n == "" {
			return nil, fmt.Errorf("etcd member %x (%s) has not started yet: start it, or remove it (gantry host remove), before another host joins", m.ID, strings.Join(m.PeerURLs, ","))
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return &Membership{InitialCluster: strings.Join(parts, ",")}, nil
}

// addLearner adds the learner of peerURL and returns the members then.
// etcd refuses while a member joined a moment ago (it checks that every
// voting member has been connected for a while): that is tried again until
// ctx ends.
func addLearner(ctx context.Context, etcd *clientv3.Client, peerURL string) ([]*etcdserverpb.Member, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, etcdTimeout)
		resp, err := etcd.MemberAddAsLearner(actx, []string{peerURL})
		cancel()
		if err == nil {
			return resp.Members, nil
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) && !errors.Is(err, rpctypes.ErrGRPCUnhealthy) {
			return nil, fmt.Errorf("add %s to etcd's members: %w", peerURL, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("add %s to etcd's members: %w (last: %v)", peerURL, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Promote makes the learner of peerURL a voting member, once it has
// caught up with the leader (etcd refuses earlier), retrying until ctx
// ends. A member that votes already is left as it is.
func Promote(ctx context.Context, etcd *clientv3.Client, peerURL string) error {
	var last error
	for {
		list, err := memberList(ctx, etcd)
		if err == nil {
			i := slices.IndexFunc(list, func(m *etcdserverpb.Member) bool { return slices.Contains(m.PeerURLs, peerURL) })
			switch {
			case i < 0:
				return fmt.Errorf("etcd has no member at %s: was it removed?", peerURL)
			case !list[i].IsLearner:
				return nil
			}
			pctx, cancel := context.WithTimeout(ctx, etcdTimeout)
			_, err = etcd.MemberPromote(pctx, list[i].ID)
			cancel()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote the etcd member at %s: %w (last: %v)", peerURL, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ClientURLs returns the client URLs of the etcd members that have
// started, in the order of their IDs, with the member of peerURL (this
// host's, when it has one) first.
func ClientURLs(ctx context.Context, etcd *clientv3.Client, peerURL string) ([]string, error) {
	list, err := memberList(ctx, etcd)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(list, func(a, b *etcdserverpb.Member) int {
		ai, bi := slices.Contains(a.PeerURLs, peerURL), slices.Contains(b.PeerURLs, peerURL)
		switch {
		case ai && !bi:
			return -1
		case bi && !ai:
			return 1
		}
		return 0
	})
	var urls []string
	for _, m := range list {
		for _, u := range m.ClientURLs {
			if !slices.Contains(urls, u) {
				urls = append(urls, u)
			}
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("etcd lists no member with a client URL")
	}
	return urls, nil
}

// Remove removes the etcd member named name (a host's ID: the host is
// gone for good, `gantry host remove`), so that the quorum counts the
// members that remain and a host that joins later takes its place; it
// reports whether there was one.
func Remove(ctx context.Context, etcd *clientv3.Client, name string) (bool, error) {
	list, err := memberList(ctx, etcd)
	if err != nil {
		return false, err
	}
	for _, m := range list {
		if m.Name == name {
			rctx, cancel := context.WithTimeout(ctx, etcdTimeout)
			_, err := etcd.MemberRemove(rctx, m.ID)
			cancel()
			if err != nil {
				return false, fmt.Errorf("remove the etcd member %s: %w", name, err)
			}
			return true, nil
		}
	}
	return false, nil
}

func memberList(ctx context.Context, etcd *clientv3.Client) ([]*etcdserverpb.Member, error) {
	lctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := etcd.MemberList(lctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd's members: %w", err)
	}
	return resp.Members, nil
}

// UpdatePeer makes the peer URL of the member named name peerURL (a host
// that started again with another address); a member that has it already,
// or no member of that name, is left as it is.
func UpdatePeer(ctx context.Context, etcd *clientv3.Client, name, peerURL string) error {
	list, err := memberList(ctx, etcd)
	if err != nil {
		return err
	}
	for _, m := range list {
		if m.Name != name || slices.Equal(m.PeerURLs, []string{peerURL}) {
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		_, err := etcd.MemberUpdate(uctx, m.ID, []string{peerURL})
		cancel()
		if err != nil {
			return fmt.Errorf("update the peer URL of etcd member %s to %s: %w", name, peerURL, err)
		}
	}
	return nil
}
