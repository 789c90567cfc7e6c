package controller

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

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/argv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	routertypes "github.com/gantryhq/gantry/router/types"
)

const (
	// etcdTimeout bounds each etcd request.
	etcdTimeout = 5 * time.Second
	// maxMirrorValue is the largest value the mirror puts, in bytes: well
	// under etcd's request limit (1.5 MiB by default) and the client's (2
	// MiB). The limits of config vars (types.MaxConfigTotal) and process
	// commands (types.MaxProcessCommand) keep every formation of a release
	// made through the API under it, whatever their content; only a
	// release stored before those limits can exceed it, and its
	// formations are then not mirrored (see desired).
	maxMirrorValue = 1 << 20
	// WebPort is the container port of every process of type web (the
	// container gets PORT=8080); other process types listen on nothing.
	WebPort = 8080
)

// errEtcdUnreachable marks an etcd request that got no answer (a timeout,
// no connection, no leader): the API answers it with 503.
var errEtcdUnreachable = errors.New("etcd is unreachable")

// errEtcdRefused marks an etcd request that etcd answered with an error
// (e.g. a request over its size limit): retrying it will not help.
var errEtcdRefused = errors.New("etcd refused the request")

// errTooLarge marks a formation whose etcd value would be over
// maxMirrorValue.
var errTooLarge = errors.New("too large for etcd")

// etcdErr wraps a failed etcd request with what failed and the kind of
// failure: errEtcdUnreachable or errEtcdRefused (see etcdUnreachable).
func etcdErr(op string, err error) error {
	kind := errEtcdRefused
	if etcdUnreachable(err) {
		kind = errEtcdUnreachable
	}
	return fmt.Errorf("%s: %w: %w", op, kind, err)
}

// etcdUnreachable reports whether err, from an etcd request, means that
// etcd did not answer (or answered that it cannot serve now), as opposed
// to refusing the request itself.
func etcdUnreachable(err error) bool {
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

// mirror writes the formations and routes kept in PostgreSQL into etcd,
// where the scheduler and the router read them. It is the only writer of
// the key families formations/ and routes/ of its cluster. Writes are
// level-triggered: each sync reads the state from PostgreSQL and makes the
// keys match it, putting only the values that differ and deleting the keys
// PostgreSQL does not have, so a missed or failed sync is repaired by the
// next one.
type mirror struct {
	etcd   *clientv3.Client
	space  keyspace.Space
	store  *store.Store
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

// syncApp makes the etcd keys of app match PostgreSQL: its formations, its
// custom routes and its default route. A deleted app loses all its keys.
func (m *mirror) syncApp(ctx context.Context, app string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.store.Mirror(ctx, app)
	if err != nil {
		return err
	}
	formations, err := m.listFormations(ctx, m.space.AppFormations(app), liveApps(st))
	if err != nil {
		return err
	}
	routes, err := m.list(ctx, m.space.Routes())
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

// resync makes every formation and route key of the cluster match
// PostgreSQL, deleting the keys of apps, releases, types and domains that
// PostgreSQL does not have. A custom route wins over another app's default
// route with the same domain.
func (m *mirror) resync(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.store.Mirror(ctx, "")
	if err != nil {
		return err
	}
	existing, err := m.listFormations(ctx, m.space.Formations(), liveApps(st))
	if err != nil {
		return err
	}
	routes, err := m.list(ctx, m.space.Routes())
	if err != nil {
		return err
	}
	maps.Copy(existing, routes)
	return m.apply(ctx, m.desired(st), existing)
}

// desired returns the keys and values that st asks for.
func (m *mirror) desired(st store.MirrorState) map[string][]byte {
	want := map[string][]byte{}
	for _, f := range st.Formations {
		if f.Count == 0 {
			continue
		}
		v, err := m.formationValue(f)
		if err == nil && len(v) > maxMirrorValue {
			err = fmt.Errorf("%w: the formation is %d bytes, the limit is %d", errTooLarge, len(v), maxMirrorValue)
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
		want[m.space.Route(r.Domain)] = mustJSON(rt)
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
		want[m.space.Route(d)] = mustJSON(rt)
	}
	return want
}

// apply puts the keys of want whose value differs from existing, then
// deletes the keys of existing that want does not have. A key that fails
// does not stop the others, so one app's trouble (say, a value etcd
// refuses) never keeps the other apps' keys from being repaired; only an
// unreachable etcd stops the pass, since every other request would wait
// for it too. It returns the failures, joined.
func (m *mirror) apply(ctx context.Context, want, existing map[string][]byte) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if cur, ok := existing[k]; ok && bytes.Equal(cur, want[k]) {
			continue
		}
		if err := m.put(ctx, k, want[k]); err != nil {
			if errors.Is(err, errEtcdUnreachable) {
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
		if err := m.delete(ctx, k); err != nil {
			if errors.Is(err, errEtcdUnreachable) {
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
func (m *mirror) listFormations(ctx context.Context, prefix string, live map[string]bool) (map[string][]byte, error) {
	kvs, err := m.list(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for k, v := range kvs {
		var f keyspace.Formation
		if json.Unmarshal(v, &f) == nil && f.Template.OneOff && live[f.App] {
			delete(kvs, k)
		}
	}
	return kvs, nil
}

// liveApps returns the apps of st as a set.
func liveApps(st store.MirrorState) map[string]bool {
	live := make(map[string]bool, len(st.Apps))
	for _, a := range st.Apps {
		live[a] = true
	}
	return live
}

// list returns the keys and values under prefix.
func (m *mirror) list(ctx context.Context, prefix string) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := m.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdErr("list "+prefix, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.Value
	}
	return out, nil
}

func (m *mirror) put(ctx context.Context, key string, value []byte) error {
	if len(value) > maxMirrorValue {
		return fmt.Errorf("put %s: %w: the value is %d bytes, the limit is %d", key, errEtcdRefused, len(value), maxMirrorValue)
	}
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := m.etcd.Put(ctx, key, string(value)); err != nil {
		return etcdErr("put "+key, err)
	}
	return nil
}

func (m *mirror) delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := m.etcd.Delete(ctx, key); err != nil {
		return etcdErr("delete "+key, err)
	}
	return nil
}

// webService is the discovery service of an app's web processes.
func webService(app string) string { return app + "-web" }

// Slug releases run `gantryd slugrunner start` (mounted by the host
// agent, see keyspace.JobSpec.MountGantryd) on the stack image recorded in
// the release, as the stack's unprivileged user, with the slug fetched and
// cached by the agent and mounted read-only at SlugMountPath.
const (
	// GantrydPath is where a job with MountGantryd finds gantryd.
	GantrydPath = "/usr/local/bin/gantryd"
	// SlugMountPath is where the slug of a release is mounted in its
	// containers; slugrunner unpacks it into /app.
	SlugMountPath = "/tmp/gantry-in/slug.tgz"
	// AppUser is the unprivileged user of the stack and builder images
	// that builds and slug releases run as.
	AppUser = "app"
)

// formationValue is the etcd value of a formation row.
func (m *mirror) formationValue(f store.MirrorFormation) ([]byte, error) {
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
		spec.Cmd = []string{GantrydPath, "slugrunner", "start", "--slug", SlugMountPath, "--digest", f.Slug,
			"--command", f.Process.Command, f.Type}
		spec.Artifacts = []keyspace.Artifact{{URL: m.blobURL(f.SlugPath), Digest: f.Slug, Path: SlugMountPath}}
		spec.MountGantryd = true
		spec.User = AppUser
	} else {
		cmd, err := argv.Split(f.Process.Command)
		if err != nil {
			return nil, fmt.Errorf("command %q: %w", f.Process.Command, err)
		}
		spec.Cmd = cmd
	}
	if f.Type == "web" {
		spec.Port = WebPort
		spec.Service = webService(f.App)
	}
	return mustJSON(keyspace.Formation{
		App:         f.App,
		Release:     f.Release.ID,
		Type:        f.Type,
		Count:       f.Count,
		Template:    spec,
		RestartedAt: f.RestartedAt,
		UpdatedAt:   f.UpdatedAt,
	}), nil
}

// mustJSON marshals values that always marshal (structs of strings,
// numbers, maps of strings and times).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}
