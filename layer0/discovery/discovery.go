// Package discovery says where the healthy instances of a service live.
//
// Instances are etcd keys under /gantry/<cluster>/services/<service>/<id>,
// written by the host agent under its lease once an instance's health check
// passes, and deleted when the instance is drained or the host goes away.
// Readers (the router, the controller) list a service or watch it as a stream
// of consistent snapshots.
package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// ErrInvalid is returned for an instance or service name that cannot be
// registered.
var ErrInvalid = errors.New("invalid instance")

// Instance is one healthy, reachable instance of a service.
type Instance struct {
	// ID is unique within the service (the job ID).
	ID string `json:"id"`
	// Service is the service name; filled in on reads.
	Service string `json:"service"`
	// Addr is the host:port to send traffic to.
	Addr string `json:"addr"`
	// Meta carries free-form facts: app, release, type, host.
	Meta map[string]string `json:"meta,omitempty"`
	// RegisteredAt is when the instance became healthy.
	RegisteredAt time.Time `json:"registered_at"`
}

// Client reads and writes one cluster's discovery keys.
type Client struct {
	etcd    *clientv3.Client
	space   keyspace.Space
	timeout time.Duration
	log     *slog.Logger
}

// New returns a discovery client for the cluster of space. Each etcd request
// is bounded by timeout (zero means 5 s).
func New(etcd *clientv3.Client, space keyspace.Space, timeout time.Duration, log *slog.Logger) *Client {
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{etcd: etcd, space: space, timeout: timeout, log: log}
}

func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/ \t\n") && len(s) <= 200
}

// Register writes inst under service, attached to lease so that it vanishes
// when the registering host stops heartbeating.
func (c *Client) Register(ctx context.Context, lease clientv3.LeaseID, service string, inst Instance) error {
	if !validName(service) || !validName(inst.ID) || inst.Addr == "" {
		return fmt.Errorf("register %q in %q: %w: need a service, an ID without slashes and an address", inst.ID, service, ErrInvalid)
	}
	inst.Service = service
	if inst.RegisteredAt.IsZero() {
		inst.RegisteredAt = time.Now().UTC()
	}
	val, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("register %s/%s: %w", service, inst.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.etcd.Put(ctx, c.space.Instance(service, inst.ID), string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("register %s/%s: %w", service, inst.ID, err)
	}
	return nil
}

// Deregister removes an instance. Removing one that is not registered is not
// an error.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.etcd.Delete(ctx, c.space.Instance(service, id)); err != nil {
		return fmt.Errorf("deregister %s/%s: %w", service, id, err)
	}
	return nil
}

// List returns the instances of service sorted by ID, and the revision read.
func (c *Client) List(ctx context.Context, service string) ([]Instance, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.space.Service(service), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list service %s: %w", service, err)
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv.Value
	}
	return c.decode(kvs)[service], resp.Header.Revision, nil
}

// Snapshot is the set of instances of every watched service at one revision.
type Snapshot struct {
	Revision int64
	// Services maps a service name to its instances, sorted by ID. A
	// service without instances is absent.
	Services map[string][]Instance
}

// Watch streams snapshots of one service (service != "") or of every service
// of the cluster (service == ""). It has the semantics of etcdwatch.Watch:
// the latest snapshot is always delivered, intermediate ones may be skipped,
// and the channel closes when ctx is done.
func (c *Client) Watch(ctx context.Context, service string) (<-chan Snapshot, error) {
	prefix := c.space.Services()
	if service != "" {
		prefix = c.space.Service(service)
	}
	raw, err := etcdwatch.Watch(ctx, etcdwatch.Config{Client: c.etcd, Prefix: prefix, RequestTimeout: c.timeout, Logger: c.log})
	if err != nil {
		return nil, fmt.Errorf("watch services: %w", err)
	}
	out := make(chan Snapshot, 1)
	go func() {
		defer close(out)
		for s := range raw {
			snap := Snapshot{Revision: s.Revision, Services: c.decode(s.KVs)}
			select {
			case <-out: // drop an unread older snapshot
			default:
			}
			select {
			case out <- snap:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// decode groups instance keys by service, skipping (and logging) values that
// do not parse.
func (c *Client) decode(kvs map[string][]byte) map[string][]Instance {
	root := c.space.Services()
	out := make(map[string][]Instance)
	for k, v := range kvs {
		rest, ok := strings.CutPrefix(k, root)
		if !ok {
			continue
		}
		service, id, ok := strings.Cut(rest, "/")
		if !ok || id == "" {
			continue
		}
		var inst Instance
		if err := json.Unmarshal(v, &inst); err != nil {
			c.log.Warn("skipping unreadable discovery entry", "key", k, "err", err)
			continue
		}
		inst.Service, inst.ID = service, id
		out[service] = append(out[service], inst)
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out
}
