// Package etcdkv makes the controller's requests to etcd: each one with a
// deadline (Timeout), and each failure wrapped with what failed and what
// kind of failure it is, ErrUnreachable (no answer: the API says 503) or
// ErrRefused (etcd answered with an error: retrying will not help).
package etcdkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// Timeout bounds each etcd request.
	Timeout = 5 * time.Second
	// MaxValue is the largest value Put sends, in bytes: well under
	// etcd's request limit (1.5 MiB by default) and the client's (2 MiB).
	MaxValue = 1 << 20
)

// ErrUnreachable marks an etcd request that got no answer (a timeout, no
// connection, no leader): the API answers it with 503.
var ErrUnreachable = errors.New("etcd is unreachable")

// ErrRefused marks an etcd request that etcd answered with an error (e.g.
// a request over its size limit): retrying it will not help.
var ErrRefused = errors.New("etcd refused the request")

// Err wraps a failed etcd request with what failed and the kind of
// failure: ErrUnreachable or ErrRefused (see Unreachable).
func Err(op string, err error) error {
	kind := ErrRefused
	if Unreachable(err) {
		kind = ErrUnreachable
	}
	return fmt.Errorf("%s: %w: %w", op, kind, err)
}

// Unreachable reports whether err, from an etcd request, means that etcd
// did not answer (or answered that it cannot serve now), as opposed to
// refusing the request itself.
func Unreachable(err error) bool {
	var ee rpctypes.EtcdError
	if !errors.As(err, &ee) {
		// No answer from etcd: a deadline, a cancelled request, a
		// connection that failed.
		return true
	}
	for _, e := range []error{rpctypes.ErrNoLeader, rpctypes.ErrNotLeader, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrLeaderChanged,
		rpctypes.ErrNotCapable, rpctypes.ErrStopped, rpctypes.ErrTooManyRequests, rpctypes.ErrUnhealthy, rpctypes.ErrCorrupt} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// List returns the keys and values under prefix.
func List(ctx context.Context, c *clientv3.Client, prefix string) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, Err("list "+prefix, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.Value
	}
	return out, nil
}

// Put puts value at key; a value over MaxValue is refused without a
// request.
func Put(ctx context.Context, c *clientv3.Client, key string, value []byte) error {
	if len(value) > MaxValue {
		return fmt.Errorf("put %s: %w: the value is %d bytes, the limit is %d", key, ErrRefused, len(value), MaxValue)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if _, err := c.Put(ctx, key, string(value)); err != nil {
		return Err("put "+key, err)
	}
	return nil
}

// Delete deletes key.
func Delete(ctx context.Context, c *clientv3.Client, key string) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if _, err := c.Delete(ctx, key); err != nil {
		return Err("delete "+key, err)
	}
	return nil
}

// MustJSON marshals values that always marshal (structs of strings,
// numbers, maps of strings and times), such as the values of keyspace.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}
