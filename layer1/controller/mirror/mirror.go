// Package mirror makes etcd's formations/ and routes/ of a cluster match
// the controller's PostgreSQL: it is the only writer of those key
// families, which the scheduler and the router read. See
// docs/ARCHITECTURE.md, "Controller: from PostgreSQL to etcd".
package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/argv"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
	routertypes "github.com/gantryhq/gantry/router/types"
)

// errTooLarge marks a formation whose etcd value would be over
// etcdkv.MaxValue. The limits of config vars (types.MaxConfigTotal) and
// process commands (types.MaxProcessCommand) keep every formation of a
// release made through the API under it, whatever their content; only a
// release stored before those limits can exceed it, and its formations are
// then not mirrored (see desired).
var errTooLarge = errors.New("too large for etcd")

// Source is the state the mirror copies: the formations, routes and apps
// kept in PostgreSQL, of one app or (app "") of all.
type Source interface {
	Mirror(ctx context.Context, app string) (store.MirrorState, error)
}

var _ Source = (*store.Store)(nil)

// Config is what a Mirror needs.
type Config struct {
	// Etcd is the client of the cluster's etcd. Required.
	Etcd *clientv3.Client
	// Space is the cluster's key space.
	Space keyspace.Space
	// Source is PostgreSQL's state. Required.
	Source Source
	// Domain returns the default domain of an app. Required.
	Domain func(app string) string
	// BlobURL returns the URL of a blob as the host agents reach it; nil
	// leaves the releases built from source unmirrored (a controller
	// without an internal URL).
	BlobURL func(path string) string
	// Logger receives the mirror's logs; nil discards them.
	Logger *slog.Logger
}

// New returns the mirror of cfg.
func New(cfg Config) *Mirror {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mirror{etcd: cfg.Etcd, space: cfg.Space, source: cfg.Source, domain: cfg.Domain, blobURL: cfg.BlobURL, log: log}
}

// Mirror writes the formations and routes kept in PostgreSQL into etcd,
// where the scheduler and the router read them. It is the only writer of
// the key families formations/ and routes/ of its cluster. Writes are
// level-triggered: each sync reads the state from PostgreSQL and makes the
// keys match it, putting only the values that differ and deleting the keys
// PostgreSQL does not have, so a missed or failed sync is repaired by the
// next one.
type Mirror struct {
	etcd   *clientv3.Client
	space  keyspace.Space
	source Source
	domain func(app string) string // the default domain of an app
	// blobURL is the URL of a blob as the host agents reach it; nil when
	// the controller has no InternalURL, which leaves slug releases
	// unmirrored.
	blobURL func(path string) string
	log     *slog.Logger

	// mu serialises syncs, so that a sync never writes a state older than
	// the one an earlier sync wrote.
	mu sync.Mutex
}

// SyncApp makes the etcd keys of app match PostgreSQL: its formations, its
// custom routes and its default route. A deleted app loses all its keys.
func (m *Mirror) SyncApp(ctx context.Context, app string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.source.Mirror(ctx, app)
	if err != nil {
		return err
	}
	formations, err := m.listFormations(ctx, m.space.AppFormations(app), liveApps(st))
	if err != nil {
		return err
	}
	routes, err := etcdkv.List(ctx, m.etcd, m.space.Routes())
	if err != nil {
		return err
	}
	// Only the app's own routes are in scope; a default route whose domain
	// is taken by another app's custom route is left to that route.
	ownRoutes := map[string][]byte{}
	for k, v := range routes {
		var r routertypes.Route
		if json.Unmarshal(v, &r) == nil && r.App == app {
			ownRoutes[k] = v
		}
	}
	want := m.desired(st)
	// The default route gives way to another app's custom route of the
	// same domain (the full resync settles such a conflict).
	if def := m.space.Route(m.domain(app)); routes[def] != nil && ownRoutes[def] == nil {
		delete(want, def)
	}
	existing := formations
	maps.Copy(existing, ownRoutes)
	return m.apply(ctx, want, existing)
}

// Run re-syncs the whole mirror now and every interval until ctx ends,
// and calls synced after each pass (the controller wakes its deployer
// then, so that deployments left running by an earlier process are
// resumed). A failed pass is logged and retried at the next interval.
func (m *Mirror) Run(ctx context.Context, interval time.Duration, synced func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := m.Resync(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("re-sync of etcd from PostgreSQL failed; retrying at the next interval",
				"interval", interval, "err", err)
		}
		synced()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Resync makes every formation and route key of the cluster match
// PostgreSQL, deleting the keys of apps, releases, types and domains that
// PostgreSQL does not have. A custom route wins over another app's default
// route with the same domain.
func (m *Mirror) Resync(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// etcd first, PostgreSQL second: a one-off formation (a build, a run)
	// is written by whoever runs the job, not under mu, for an app that
	// already exists. Read in this order, every app with a key in the
	// listing is in the state read after it, unless it was deleted since;
	// read the other way round, a build of an app made between the two
	// reads would look like the leftover of a deleted app and be removed.
	existing, err := etcdkv.List(ctx, m.etcd, m.space.Formations())
	if err != nil {
		return err
	}
	routes, err := etcdkv.List(ctx, m.etcd, m.space.Routes())
	if err != nil {
		return err
	}
	st, err := m.source.Mirror(ctx, "")
	if err != nil {
		return err
	}
	dropOneOff(existing, liveApps(st))
	maps.Copy(existing, routes)
	return m.apply(ctx, m.desired(st), existing)
}

// desired returns the keys and values that st asks for.
func (m *Mirror) desired(st store.MirrorState) map[string][]byte {
	want := map[string][]byte{}
	for _, f := range st.Formations {
		if f.Count == 0 {
			continue
		}
		v, err := m.formationValue(f)
		if err == nil && len(v) > etcdkv.MaxValue {
			err = fmt.Errorf("%w: the formation is %d bytes, the limit is %d", errTooLarge, len(v), etcdkv.MaxValue)
		}
		if err != nil {
			// Releases are checked when they are made; this one cannot run.
			m.log.Error("formation not mirrored", "app", f.App, "release", f.Release.Version, "type", f.Type, "err", err)
			continue
		}
		want[m.space.Formation(f.App, f.Release.ID, f.Type)] = v
	}
	custom := map[string]bool{}
	for _, r := range st.Routes {
		custom[r.Domain] = true
		rt := routertypes.Route{
			Domain:  r.Domain,
			App:     r.App,
			Service: webService(r.App),
			// A route waiting for its ACME certificate is not redirected
			// to HTTPS before the certificate is there.
			HTTPSOnly: r.HTTPSOnly && (r.CertState == "" || r.TLSCert != ""),
			// The router applies the app's once it has a certificate.
			AppHTTPSOnly: st.HTTPSOnly[r.App],
			TLSCert:      r.TLSCert,
			// Sealed in PostgreSQL, and so in etcd: the routers open it.
			TLSKey: r.TLSKey,
		}
		want[m.space.Route(r.Domain)] = etcdkv.MustJSON(rt)
	}
	for _, app := range st.WebApps {
		d := m.domain(app)
		if custom[d] {
			continue
		}
		rt := routertypes.Route{Domain: d, App: app, Service: webService(app), AppHTTPSOnly: st.HTTPSOnly[app]}
		// A certificate obtained for an earlier domain of the platform
		// does not cover this one.
		if c, ok := st.DefaultCerts[app]; ok && c.Domain == d {
			rt.TLSCert, rt.TLSKey = c.TLSCert, c.TLSKey
		}
		want[m.space.Route(d)] = etcdkv.MustJSON(rt)
	}
	return want
}

// apply puts the keys of want whose value differs from existing, then
// deletes the keys of existing that want does not have. A key that fails
// does not stop the others, so one app's trouble (say, a value etcd
// refuses) never keeps the other apps' keys from being repaired; only an
// unreachable etcd stops the pass, since every other request would wait
// for it too. It returns the failures, joined.
func (m *Mirror) apply(ctx context.Context, want, existing map[string][]byte) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if cur, ok := existing[k]; ok && bytes.Equal(cur, want[k]) {
			continue
		}
		if err := etcdkv.Put(ctx, m.etcd, k, want[k]); err != nil {
			if errors.Is(err, etcdkv.ErrUnreachable) {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
			continue
		}
		m.log.Debug("mirrored", "key", k)
	}
	for _, k := range slices.Sorted(maps.Keys(existing)) {
		if _, ok := want[k]; ok {
			continue
		}
		if err := etcdkv.Delete(ctx, m.etcd, k); err != nil {
			if errors.Is(err, etcdkv.ErrUnreachable) {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
			continue
		}
		m.log.Debug("removed from the mirror", "key", k)
	}
	return errors.Join(errs...)
}

// listFormations returns the formation keys and values under prefix that
// the mirror owns: all but those of one-off jobs (keyspace.JobSpec.OneOff)
// of the apps in live, which belong to whoever runs the job (a build, a
// run) and are never removed here. The one-off formations of an app that
// no longer exists are the mirror's to remove, so that deleting an app
// stops its builds and runs too.
func (m *Mirror) listFormations(ctx context.Context, prefix string, live map[string]bool) (map[string][]byte, error) {
	kvs, err := etcdkv.List(ctx, m.etcd, prefix)
	if err != nil {
		return nil, err
	}
	dropOneOff(kvs, live)
	return kvs, nil
}

// dropOneOff removes from kvs the one-off formations of the apps in live
// (see listFormations).
func dropOneOff(kvs map[string][]byte, live map[string]bool) {
	for k, v := range kvs {
		var f keyspace.Formation
		if json.Unmarshal(v, &f) == nil && f.Template.OneOff && live[f.App] {
			delete(kvs, k)
		}
	}
}

// liveApps returns the apps of st as a set.
func liveApps(st store.MirrorState) map[string]bool {
	live := make(map[string]bool, len(st.Apps))
	for _, a := range st.Apps {
		live[a] = true
	}
	return live
}

// webService is the discovery service of an app's web processes.
func webService(app string) string { return app + "-web" }

// formationValue is the etcd value of a formation row.
func (m *Mirror) formationValue(f store.MirrorFormation) ([]byte, error) {
	spec := keyspace.JobSpec{
		App:            f.App,
		Release:        f.Release.ID,
		ReleaseVersion: f.Release.Version,
		Type:           f.Type,
		Image:          f.Image,
		Env:            f.Config,
		Health:         keyspace.HealthCheck{Path: f.Process.HealthPath},
	}
	if f.Slug != "" {
		if m.blobURL == nil {
			return nil, errors.New("a release built from source needs the controller's InternalURL")
		}
		// The command is the release's (the Procfile's, or a buildpack's
		// default): shell code that slugrunner runs. Flags go before the
		// type, which only names the process (urfave/cli).
		spec.Cmd = []string{types.GantrydPath, "slugrunner", "start", "--slug", types.SlugMountPath, "--digest", f.Slug,
			"--command", f.Process.Command, f.Type}
		spec.Artifacts = []keyspace.Artifact{{URL: m.blobURL(f.SlugPath), Digest: f.Slug, Path: types.SlugMountPath}}
		spec.MountGantryd = true
		spec.User = types.AppUser
	} else {
		cmd, err := argv.Split(f.Process.Command)
		if err != nil {
			return nil, fmt.Errorf("command %q: %w", f.Process.Command, err)
		}
		spec.Cmd = cmd
	}
	if sys := f.Process.System; sys != nil {
		// A process of the platform's own apps (never one made through
		// the API): on the host's network, with the data dir mounted. Its
		// command names the program (gantryd), not only its arguments.
		spec.System, spec.HostNetwork, spec.Port, spec.Binds = f.App, true, sys.Port, sys.Binds
		spec.Health.Socket = sys.Ready
		if len(spec.Cmd) > 0 {
			spec.Entrypoint, spec.Cmd = spec.Cmd[:1], spec.Cmd[1:]
		}
	} else if f.Type == "web" {
		spec.Port = types.WebPort
		spec.Service = webService(f.App)
	}
	return etcdkv.MustJSON(keyspace.Formation{
		App:         f.App,
		Release:     f.Release.ID,
		Type:        f.Type,
		Count:       f.Count,
		Template:    spec,
		RestartedAt: f.RestartedAt,
		UpdatedAt:   f.UpdatedAt,
		PerHost:     f.Process.System != nil && f.Process.System.PerHost,
	}), nil
}
