package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// MirrorFormation is one formation row with what its etcd value needs.
type MirrorFormation struct {
	App     string
	Release ReleaseRef
	Type    string
	Count   int
	// Image, Slug, SlugPath and Config come from the release; Process is
	// the release's process of Type.
	Image       string
	Slug        string
	SlugPath    string
	Config      map[string]string
	Process     types.Process
	RestartedAt time.Time
	UpdatedAt   time.Time
}

// MirrorState is the part of the state that the controller mirrors into
// etcd, for one app or for all.
type MirrorState struct {
	// Apps are the names of the apps covered.
	Apps []string
	// Formations are the formation rows of those apps (counts of 0
	// included), by app, release version and type, with the counts etcd
	// gets (see effectiveCount).
	Formations []MirrorFormation
	// WebApps are the apps whose current release has a web process, which
	// gives them their default route.
	WebApps []string
	// Routes are the custom routes of those apps, by domain.
	Routes []Route
	// HTTPSOnly holds the apps whose app-wide HTTPS-only switch is on.
	HTTPSOnly map[string]bool
	// DefaultCerts are the obtained certificates of those apps' default
	// domains, by app (issued ones only; see DefaultCert.Domain).
	DefaultCerts map[string]DefaultCert
}

// effectiveCount is the count of formation f that etcd gets: its own,
// except while a deployment d from a running release is active, when the
// deployment's step p bounds it: the new release has p.started jobs, the
// old one p.old_left (or its own count again while rolling back).
// A pending deployment's release has none yet.
const effectiveCount = `CASE
		WHEN pd.id IS NOT NULL THEN 0
		WHEN d.id IS NULL THEN f.count
		WHEN f.release_id = d.new_release_id THEN LEAST(f.count, COALESCE(p.started, 0))
		WHEN f.release_id = d.old_release_id AND d.status = 'running' THEN LEAST(f.count, COALESCE(p.old_left, f.count))
		ELSE f.count END`

// Mirror returns the mirrored state of app, or of every app when app is
// "". A missing app gives an empty state (its etcd keys are to be removed),
// not an error.
func (s *Store) Mirror(ctx context.Context, app string) (MirrorState, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var m MirrorState
	// One snapshot for all the reads.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT a.name, COALESCE(cur.processes ? 'web', false), a.https_only
			FROM apps a LEFT JOIN releases cur ON cur.id = a.release_id
			WHERE $1 = '' OR a.name = $1 ORDER BY a.name`, app)
		if err != nil {
			return err
		}
		var name string
		var web, httpsOnly bool
		m.HTTPSOnly = map[string]bool{}
		if _, err := pgx.ForEachRow(rows, []any{&name, &web, &httpsOnly}, func() error {
			m.Apps = append(m.Apps, name)
			if web {
				m.WebApps = append(m.WebApps, name)
			}
			if httpsOnly {
				m.HTTPSOnly[name] = true
			}
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+defaultCertColumns+` FROM default_certs d JOIN apps a ON a.id = d.app_id
			WHERE ($1 = '' OR a.name = $1) AND d.tls_cert <> ''`, app)
		if err != nil {
			return err
		}
		certs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DefaultCert, error) { return scanDefaultCert(r) })
		if err != nil {
			return err
		}
		m.DefaultCerts = make(map[string]DefaultCert, len(certs))
		for _, d := range certs {
			m.DefaultCerts[d.App] = d
		}
		rows, err = tx.Query(ctx, `SELECT a.name, r.id::text, r.version, f.type, `+effectiveCount+`, r.image, r.slug, r.slug_path,
				r.config, r.processes -> f.type, COALESCE(f.restarted_at, 'epoch'), f.updated_at
			FROM formations f JOIN apps a ON a.id = f.app_id JOIN releases r ON r.id = f.release_id
			LEFT JOIN deployments d ON d.app_id = f.app_id AND d.status IN ('running', 'rolling_back') AND d.from_running
			LEFT JOIN deployment_processes p ON p.deployment_id = d.id AND p.type = f.type
			LEFT JOIN deployments pd ON pd.new_release_id = f.release_id AND pd.status = 'pending'
			WHERE $1 = '' OR a.name = $1 ORDER BY a.name, r.version, f.type`, app)
		if err != nil {
			return err
		}
		m.Formations, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (MirrorFormation, error) {
			var f MirrorFormation
			var proc *types.Process
			err := row.Scan(&f.App, &f.Release.ID, &f.Release.Version, &f.Type, &f.Count, &f.Image, &f.Slug, &f.SlugPath, &f.Config,
				&proc, &f.RestartedAt, &f.UpdatedAt)
			if proc != nil {
				f.Process = *proc
			}
			if f.RestartedAt.Equal(time.Unix(0, 0)) {
				f.RestartedAt = time.Time{}
			} else {
				f.RestartedAt = f.RestartedAt.UTC()
			}
			f.UpdatedAt = f.UpdatedAt.UTC()
			return f, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+routeColumns+` FROM routes r JOIN apps a ON a.id = r.app_id
			WHERE $1 = '' OR a.name = $1 ORDER BY r.domain`, app)
		if err != nil {
			return err
		}
		m.Routes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Route, error) { return scanRoute(r) })
		return err
	})
	if err != nil {
		what := "all apps"
		if app != "" {
			what = "app " + app
		}
		return MirrorState{}, wrap("read the mirrored state of "+what, err)
	}
	return m, nil
}
