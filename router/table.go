package router

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/router/types"
)

// routeInfo is a validated route with its certificate parsed.
type routeInfo struct {
	types.Route
	raw  []byte           // the etcd value, to skip unchanged routes
	cert *tls.Certificate // nil: the default certificate
}

// target is what a host resolves to: a route and the backends of its
// service at the time the table was built.
type target struct {
	route    *routeInfo
	backends []*backend
}

// table is one immutable routing table. Requests read the current one
// through Router.table; every change builds a new one.
type table struct {
	exact    map[string]*target
	wildcard map[string]*target // "*.example.com" is stored under "example.com"
}

var emptyTable = &table{exact: map[string]*target{}, wildcard: map[string]*target{}}

// lookup returns the target of a parsed host: the exact route, else the
// wildcard route of its parent domain, else nil.
func (t *table) lookup(host string) *target {
	if tg := t.exact[host]; tg != nil {
		return tg
	}
	if parent, ok := wildcardParent(host); ok {
		return t.wildcard[parent]
	}
	return nil
}

// cert returns the certificate for a TLS server name: the exact route's,
// else the wildcard route's, else nil.
func (t *table) cert(host string) *tls.Certificate {
	if tg := t.exact[host]; tg != nil && tg.route.cert != nil {
		return tg.route.cert
	}
	if parent, ok := wildcardParent(host); ok {
		if tg := t.wildcard[parent]; tg != nil {
			return tg.route.cert
		}
	}
	return nil
}

// follow keeps the routing table in step with the routes and the discovery
// services until ctx is done. It closes r.ready once the first table is in
// place.
func (r *Router) follow(ctx context.Context) error {
	routesCh, err := etcdwatch.Watch(ctx, etcdwatch.Config{Client: r.cfg.Etcd, Prefix: r.space.Routes(), Logger: r.log})
	if err != nil {
		return fmt.Errorf("watch routes: %w", err)
	}
	servicesCh, err := r.disc.Watch(ctx, "")
	if err != nil {
		return fmt.Errorf("watch services: %w", err)
	}
	reap := time.NewTicker(max(time.Duration(r.pool.idleTimeout)/2, time.Second))
	defer reap.Stop()
	defer func() {
		for _, b := range r.backends {
			b.drain()
		}
	}()
	routes := map[string]*routeInfo{}
	var services map[string][]discovery.Instance
	var gotRoutes, gotServices bool
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-routesCh:
			if !ok {
				return nil
			}
			routes = r.decodeRoutes(s, routes)
			gotRoutes = true
		case s, ok := <-servicesCh:
			if !ok {
				return nil
			}
			services = s.Services
			gotServices = true
		case <-reap.C:
			now := r.now()
			for _, b := range r.backends {
				b.closeExpired(now)
			}
			continue
		}
		if gotRoutes && gotServices {
			r.apply(routes, services)
			r.readyOnce.Do(func() { close(r.ready) })
		}
	}
}

// decodeRoutes turns a snapshot of the route keys into validated routes,
// reusing the entries of prev whose value did not change (so certificates
// are parsed once). Invalid routes are logged and left out.
func (r *Router) decodeRoutes(s etcdwatch.Snapshot, prev map[string]*routeInfo) map[string]*routeInfo {
	out := make(map[string]*routeInfo, len(s.KVs))
	for key, val := range s.KVs {
		domain := strings.TrimPrefix(key, r.space.Routes())
		if old := prev[domain]; old != nil && bytes.Equal(old.raw, val) {
			out[domain] = old
			continue
		}
		ri, err := parseRoute(domain, val, r.openKey)
		if err != nil {
			r.log.Warn("ignoring invalid route", "key", key, "err", err)
			continue
		}
		out[domain] = ri
	}
	return out
}

// openKey opens a sealed private key of a route; a plain key is returned
// as it is.
func (r *Router) openKey(key string) (string, error) {
	if r.sealer == nil {
		if strings.HasPrefix(key, sealed.SealedPrefix) {
			return "", errors.New("the key is sealed and the router has no secrets key")
		}
		return key, nil
	}
	return r.sealer.Open(key)
}

// parseRoute decodes and validates the route stored under domain; open
// opens its private key (which ri then holds opened, in memory only).
func parseRoute(domain string, val []byte, open func(string) (string, error)) (*routeInfo, error) {
	ri := &routeInfo{raw: val}
	if err := json.Unmarshal(val, &ri.Route); err != nil {
		return nil, fmt.Errorf("decode route %s: %w", domain, err)
	}
	if ri.TLSKey != "" {
		key, err := open(ri.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w %s: key: %w", types.ErrInvalidRoute, domain, err)
		}
		ri.TLSKey = key
	}
	if err := ri.Validate(); err != nil {
		return nil, err
	}
	if ri.Domain != domain {
		return nil, fmt.Errorf("%w: route for %q stored under %q", types.ErrInvalidRoute, ri.Domain, domain)
	}
	if ri.TLSCert != "" {
		cert, err := tls.X509KeyPair([]byte(ri.TLSCert), []byte(ri.TLSKey))
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", types.ErrInvalidRoute, domain, err)
		}
		ri.cert = &cert
	}
	return ri, nil
}

// apply builds and installs the table of routes and services. Backends keep
// their identity (load, back-off, pool) by address across tables; those no
// route uses any more are drained.
func (r *Router) apply(routes map[string]*routeInfo, services map[string][]discovery.Instance) {
	t := &table{exact: make(map[string]*target, len(routes)), wildcard: map[string]*target{}}
	used := make(map[string]*backend, len(r.backends))
	lists := map[string][]*backend{}
	nb := 0
	for domain, ri := range routes {
		list, ok := lists[ri.Service]
		if !ok {
			for _, inst := range services[ri.Service] {
				b := used[inst.Addr]
				if b == nil {
					if b = r.backends[inst.Addr]; b == nil {
						b = &backend{addr: inst.Addr, pool: &r.pool}
					}
					used[inst.Addr] = b
				}
				if !contains(list, b) {
					list = append(list, b)
				}
			}
			lists[ri.Service] = list
			nb += len(list)
		}
		tg := &target{route: ri, backends: list}
		if parent, ok := strings.CutPrefix(domain, "*."); ok {
			t.wildcard[parent] = tg
		} else {
			t.exact[domain] = tg
		}
	}
	// The new table is visible before the backends it dropped drain, so a
	// request that meets a draining backend finds the new table when it
	// looks again (see forward).
	r.table.Store(t)
	for addr, b := range r.backends {
		if used[addr] == nil {
			b.drain()
		}
	}
	r.backends = used
	r.log.Debug("routing table updated", "routes", len(routes), "services", len(lists), "backends", nb)
}
