// Package pglock holds PostgreSQL advisory locks for the controllers: work
// that one controller of the cluster at a time must do (an app's build, a
// pass of the ACME certificates) takes a lock held by a connection of its
// own, so that a controller that dies releases it with its connection.
package pglock

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gantryhq/gantry/layer1/controller/store"
)

// Poll is how often a waiting holder tries the lock again.
const Poll = time.Second

// queryTimeout bounds each lock query.
const queryTimeout = 5 * time.Second

// Conns gives connections to the controller's PostgreSQL; Acquire fails
// with store.ErrUnavailable while PostgreSQL is unreachable.
type Conns interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

var _ Conns = (*pgxpool.Pool)(nil)

// Key names a lock: a space (one per kind of work) and a name within it.
type Key struct {
	Space int32
	Name  string
}

// Lock takes the lock of key: when another holds it, waiting (if not nil)
// is called once and the lock is tried every Poll until ctx ends. unlock
// releases it (closing the connection when the release fails).
func Lock(ctx context.Context, conns Conns, key Key, waiting func(), log *slog.Logger) (unlock func(), err error) {
	conn, err := conns.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key.Name, err)
	}
	h := fnv.New32a()
	h.Write([]byte(key.Name))
	name := int32(h.Sum32())
	try := func() (bool, error) {
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		defer cancel()
		var ok bool
		err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`, key.Space, name).Scan(&ok)
		if err != nil {
			return false, fmt.Errorf("lock %s: %w: %w", key.Name, store.ErrUnavailable, err)
		}
		return ok, nil
	}
	ok, err := try()
	if err == nil && !ok {
		if waiting != nil {
			waiting()
		}
		tick := time.NewTicker(Poll)
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
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
		defer cancel()
		var released bool
		if err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1::int4, $2::int4)`, key.Space, name).Scan(&released); err != nil || !released {
			// Closing the session releases the lock for sure.
			log.Warn("release a lock; closing its connection", "lock", key.Name, "err", err)
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}
