package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseFile is the name of the file in StateDir holding the lease ID.
const leaseFile = "lease"

// lease holds the host's etcd lease: every key the agent writes is attached
// to it, so they all vanish when the host stops heartbeating.
type lease struct {
	etcd    *clientv3.Client
	ttl     time.Duration
	path    string
	timeout time.Duration
	log     *slog.Logger
	id      atomic.Int64
}

// ID returns the current lease.
func (l *lease) ID() clientv3.LeaseID { return clientv3.LeaseID(l.id.Load()) }

// acquire reuses the lease saved in StateDir when etcd still has it, so a
// quick restart does not look like a lost host, and grants a new one
// otherwise. It returns the keys attached to a reused lease (written by the
// previous run), and whether the lease was reused. It retries until it
// succeeds or ctx ends.
func (l *lease) acquire(ctx context.Context) (attached []string, reused bool, err error) {
	if saved, ok := l.load(); ok {
		for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			tctx, cancel := context.WithTimeout(ctx, l.timeout)
			resp, err := l.etcd.TimeToLive(tctx, saved, clientv3.WithAttachedKeys())
			cancel()
			if err == nil {
				if resp.TTL > 0 {
					l.id.Store(int64(saved))
					keys := make([]string, len(resp.Keys))
					for i, k := range resp.Keys {
						keys[i] = string(k)
					}
					l.log.Info("reusing host lease", "lease", fmt.Sprintf("%x", int64(saved)), "ttl", resp.TTL, "keys", len(keys))
					return keys, true, nil
				}
				break
			}
			l.log.Warn("cannot look up saved host lease; retrying", "err", err)
			if err := sleep(ctx, wait); err != nil {
				return nil, false, err
			}
		}
	}
	return nil, false, l.grant(ctx)
}

// grant gets a new lease and saves its ID, retrying until it succeeds or
// ctx ends.
func (l *lease) grant(ctx context.Context) error {
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		tctx, cancel := context.WithTimeout(ctx, l.timeout)
		resp, err := l.etcd.Grant(tctx, int64(l.ttl.Round(time.Second)/time.Second))
		cancel()
		if err == nil {
			l.id.Store(int64(resp.ID))
			if err := l.save(resp.ID); err != nil {
				l.log.Error("cannot save host lease; a restart will grant a new one", "err", err)
			}
			l.log.Info("granted host lease", "lease", fmt.Sprintf("%x", int64(resp.ID)), "ttl", resp.TTL)
			return nil
		}
		l.log.Warn("cannot grant host lease; retrying", "err", err)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// keepAlive heartbeats the lease until ctx ends. When the lease is lost (it
// expired while etcd was unreachable, or someone revoked it), it grants a new
// one and calls renewed, which must publish every key again.
func (l *lease) keepAlive(ctx context.Context, renewed func(context.Context)) {
	for ctx.Err() == nil {
		id := l.ID()
		ch, err := l.etcd.KeepAlive(ctx, id)
		if err == nil {
			for range ch { // drain the heartbeat answers
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The keep-alive channel closes when the lease is gone or could not
		// be renewed for a whole TTL. Find out which.
		tctx, cancel := context.WithTimeout(ctx, l.timeout)
		resp, terr := l.etcd.TimeToLive(tctx, id)
		cancel()
		switch {
		case terr == nil && resp.TTL > 0:
			l.log.Warn("host lease keep-alive interrupted; resuming", "err", err)
			if sleep(ctx, 200*time.Millisecond) != nil {
				return
			}
		case terr == nil:
			l.log.Warn("host lease lost; granting a new one and publishing again", "lease", fmt.Sprintf("%x", int64(id)))
			if l.grant(ctx) != nil {
				return
			}
			renewed(ctx)
		default:
			l.log.Warn("host lease keep-alive failed; retrying", "err", terr)
			if sleep(ctx, time.Second) != nil {
				return
			}
		}
	}
}

func (l *lease) load() (clientv3.LeaseID, bool) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("cannot read saved host lease", "path", l.path, "err", err)
		}
		return 0, false
	}
	id, err := strconv.ParseInt(strings.TrimSpace(string(b)), 16, 64)
	if err != nil || id == 0 {
		l.log.Warn("ignoring unreadable saved host lease", "path", l.path)
		return 0, false
	}
	return clientv3.LeaseID(id), true
}

// save writes the lease ID atomically.
func (l *lease) save(id clientv3.LeaseID) error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return fmt.Errorf("save lease: %w", err)
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(int64(id), 16)+"\n"), 0o600); err != nil {
		return fmt.Errorf("save lease: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("save lease: %w", err)
	}
	return nil
}

// sleep waits d or until ctx ends, returning ctx's error in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
