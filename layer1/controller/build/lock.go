package build

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/store"
)

const (
	// lockPoll is how often a waiting build tries the app's build lock.
	lockPoll = time.Second
	// lockSpace is the first key of the PostgreSQL advisory locks that
	// serialise the builds of an app ("buil"); the second is a hash of
	// the app's name.
	lockSpace int32 = 0x6275696c
)

// Conns gives connections to the controller's PostgreSQL. A build holds
// one while it runs, for its lock; Acquire fails with store.ErrUnavailable
// while PostgreSQL is unreachable.
type Conns interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

var _ Conns = (*pgxpool.Pool)(nil)

// lock takes the app's build lock, a PostgreSQL advisory lock held by a
// connection of its own, so that one build of an app runs at a time
// across all controllers; a controller that dies releases it with its
// connection. When another build holds it, waiting is called once and the
// lock is tried every lockPoll until ctx ends.
//
// It is the only build lock. The git receiver's per-repository flock is
// not one: it guards the bare repository on disk (the branch is checked,
// built and moved as one step) for the pushes of one receiver, while this
// lock holds for every build of the app, whoever asks for it.
func (bd *Builder) lock(ctx context.Context, app string, waiting func()) (unlock func(), err error) {
	conn, err := bd.cfg.Conns.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte(app))
	key := int32(h.Sum32())
	try := func() (bool, error) {
		qctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
		defer cancel()
		var ok bool
		err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`, lockSpace, key).Scan(&ok)
		if err != nil {
			return false, fmt.Errorf("build lock: %w: %w", store.ErrUnavailable, err)
		}
		return ok, nil
	}
	ok, err := try()
	if err == nil && !ok {
		waiting()
		tick := time.NewTicker(lockPoll)
		defer tick.Stop()
		for err == nil && !ok {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-tick.C:
				ok, err = try()
			}
		}
	}
	if err != nil {
		// A query cut off by ctx may leave the connection unusable; the
		// pool drops it, and with it any lock.
		conn.Release()
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), etcdkv.Timeout)
		defer cancel()
		var released bool
		if err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1::int4, $2::int4)`, lockSpace, key).Scan(&released); err != nil || !released {
			// Closing the session releases the lock for sure.
			bd.log.Warn("release the build lock; closing its connection", "app", app, "err", err)
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}
