package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// electionName is the election the schedulers of a cluster campaign in.
const electionName = "scheduler"

// retryDelay is the pause between losing leadership (or failing to
// campaign) and campaigning again.
const retryDelay = 500 * time.Millisecond

// errLeadershipLost says that the election lease ended while campaigning
// or leading.
var errLeadershipLost = errors.New("election lease lost")

// Run campaigns for leadership of cfg.Cluster's scheduler and, while it
// leads, keeps the cluster's assignments converged to its formations. When
// it loses leadership it campaigns again; a standby waits until the leader
// goes. Run returns nil when ctx is done, after giving up its election key
// so that a standby takes over at once; it returns an error only for an
// invalid config.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	s := &scheduler{cfg: cfg, space: keyspace.MustNew(cfg.Cluster), log: cfg.Logger}
	b := cfg.Backoff.WithDefaults()
	s.log.Info("scheduler starting",
		"cluster", cfg.Cluster, "id", cfg.ID, "host_grace", cfg.HostGrace, "tick", cfg.Tick,
		"session_ttl", cfg.SessionTTL, "request_timeout", cfg.RequestTimeout,
		"backoff_free", max(b.Free, 0), "backoff_base", b.Base, "backoff_cap", b.Cap, "backoff_reset", b.Reset)
	for {
		err := s.term(ctx)
		if ctx.Err() != nil {
			s.log.Info("scheduler stopped")
			return nil
		}
		s.log.Warn("not leading; campaigning again", "err", err)
		select {
		case <-ctx.Done():
			s.log.Info("scheduler stopped")
			return nil
		case <-time.After(retryDelay):
		}
	}
}

type scheduler struct {
	cfg   Config
	space keyspace.Space
	log   *slog.Logger
}

// term runs one election session: campaign, lead until the lease or ctx
// ends, then give the lease up.
func (s *scheduler) term(ctx context.Context) error {
	ttl := int64(math.Ceil(s.cfg.SessionTTL.Seconds()))
	gctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	lease, err := s.cfg.Etcd.Grant(gctx, ttl)
	cancel()
	if err != nil {
		return fmt.Errorf("grant election lease: %w", err)
	}
	session, err := concurrency.NewSession(s.cfg.Etcd, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		s.revoke(ctx, lease.ID)
		return fmt.Errorf("election session: %w", err)
	}
	defer func() {
		session.Orphan()
		s.revoke(ctx, lease.ID) // deletes the election key: a standby takes over now
	}()

	// The term ends with the session: campaigning or leading on an expired
	// lease is pointless (and the guard would refuse every write).
	tctx, tcancel := context.WithCancelCause(ctx)
	defer tcancel(nil)
	go func() {
		select {
		case <-session.Done():
			tcancel(errLeadershipLost)
		case <-tctx.Done():
		}
	}()

	election := concurrency.NewElection(session, s.space.Election(electionName))
	s.log.Info("campaigning for leadership", "election", s.space.Election(electionName))
	if err := election.Campaign(tctx, s.cfg.ID); err != nil {
		return fmt.Errorf("campaign: %w", cause(tctx, err))
	}
	g := guard{key: election.Key(), rev: election.Rev()}
	s.log.Info("leading", "key", g.key, "revision", g.rev)
	err = s.lead(tctx, g)
	s.log.Info("stepping down", "err", err)
	return cause(tctx, err)
}

// cause prefers the reason ctx ended over err.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// revoke ends the election lease, also when ctx is already done.
func (s *scheduler) revoke(ctx context.Context, id clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
	defer cancel()
	if _, err := s.cfg.Etcd.Revoke(rctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Warn("revoke election lease; it expires on its own", "lease", int64(id), "err", err)
	}
}
