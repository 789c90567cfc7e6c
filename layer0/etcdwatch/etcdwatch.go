// Package etcdwatch turns an etcd key prefix into a stream of consistent
// snapshots.
//
// A watcher lists the prefix, then watches it from the listed revision. Every
// batch of events yields a new immutable Snapshot of the whole prefix. When
// the watch is compacted or fails, the watcher re-lists and resumes, so a
// reader is level-triggered: it only ever looks at the latest snapshot and
// converges from it, whatever it missed.
package etcdwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is the content of a prefix at one revision. It must not be
// modified: watchers share it with every receiver.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision int64
	// KVs maps full keys to values.
	KVs map[string][]byte
}

// Config configures Watch.
type Config struct {
	// Client is the etcd client; required.
	Client *clientv3.Client
	// Prefix is the key prefix to follow; required.
	Prefix string
	// RequestTimeout bounds each list request; zero means 5 s.
	RequestTimeout time.Duration
	// RetryDelay is the pause before re-listing after an error; zero means
	// 500 ms.
	RetryDelay time.Duration
	// Logger receives retry warnings; nil discards them.
	Logger *slog.Logger
}

// Validate reports a missing client or prefix.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("etcdwatch: no etcd client")
	}
	if c.Prefix == "" {
		return errors.New("etcdwatch: empty prefix")
	}
	return nil
}

// Watch follows cfg.Prefix until ctx is done. It sends the first snapshot
// after the initial list and a new one after every change. The channel has a
// buffer of one and always holds the latest snapshot: a slow reader skips
// intermediate snapshots but never misses the last one. The channel is
// closed when ctx is done.
func Watch(ctx context.Context, cfg Config) (<-chan Snapshot, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	out := make(chan Snapshot, 1)
	go func() {
		defer close(out)
		w := &watcher{cfg: cfg, out: out}
		for ctx.Err() == nil {
			err := w.run(ctx)
			if ctx.Err() != nil {
				return
			}
			cfg.Logger.Warn("etcd watch interrupted; re-listing", "prefix", cfg.Prefix, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(cfg.RetryDelay):
			}
		}
	}()
	return out, nil
}

type watcher struct {
	cfg Config
	out chan Snapshot
}

// run lists the prefix, publishes it, and applies watch events until the
// watch fails or ctx is done.
func (w *watcher) run(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	resp, err := w.cfg.Client.Get(lctx, w.cfg.Prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("list %s: %w", w.cfg.Prefix, err)
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv.Value
	}
	rev := resp.Header.Revision
	w.publish(ctx, Snapshot{Revision: rev, KVs: maps.Clone(kvs)})

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := w.cfg.Client.Watch(wctx, w.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if err := wr.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					return fmt.Errorf("watch %s compacted at %d: %w", w.cfg.Prefix, wr.CompactRevision, err)
				}
				return fmt.Errorf("watch %s: %w", w.cfg.Prefix, err)
			}
			if len(wr.Events) == 0 {
				continue // progress notification
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					kvs[string(ev.Kv.Key)] = ev.Kv.Value
				case clientv3.EventTypeDelete:
					delete(kvs, string(ev.Kv.Key))
				}
			}
			w.publish(ctx, Snapshot{Revision: wr.Header.Revision, KVs: maps.Clone(kvs)})
		}
	}
}

// publish replaces whatever snapshot is still unread with s.
func (w *watcher) publish(ctx context.Context, s Snapshot) {
	for {
		select {
		case w.out <- s:
			return
		case <-ctx.Done():
			return
		default:
		}
		select {
		case <-w.out: // drop the stale one
		default:
		}
	}
}
