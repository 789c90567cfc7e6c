package build

import (
	"context"
	"fmt"

	"github.com/gantryhq/gantry/layer1/controller/pglock"
)

// lockSpace is the space of the PostgreSQL advisory locks that serialise
// the builds of an app ("buil"); the name is the app's.
const lockSpace int32 = 0x6275696c

// lockPoll is how often a waiting build tries the app's build lock.
const lockPoll = pglock.Poll

// Conns gives connections to the controller's PostgreSQL. A build holds
// one while it runs, for its lock; Acquire fails with store.ErrUnavailable
// while PostgreSQL is unreachable.
type Conns = pglock.Conns

// lock takes the app's build lock (package pglock), so that one build of
// an app runs at a time across all controllers; a controller that dies
// releases it with its connection. When another build holds it, waiting
// is called once and the lock is tried until ctx ends.
//
// It is the only build lock. The git receiver's per-repository flock is
// not one: it guards the bare repository on disk (the branch is checked,
// built and moved as one step) for the pushes of one receiver, while this
// lock holds for every build of the app, whoever asks for it.
func (bd *Builder) lock(ctx context.Context, app string, waiting func()) (unlock func(), err error) {
	unlock, err = pglock.Lock(ctx, bd.cfg.Conns, pglock.Key{Space: lockSpace, Name: app}, waiting, bd.log)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	return unlock, nil
}
