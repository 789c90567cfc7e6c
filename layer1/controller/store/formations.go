package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// ProcessTypeError is returned for a process type that the app's release
// does not have. It wraps ErrUnknownProcessType.
type ProcessTypeError struct {
	Type string
	// Release is the version of the release asked about; Known its types,
	// sorted.
	Release int
	Known   []string
}

func (e *ProcessTypeError) Error() string {
	known := "no process types"
	if len(e.Known) > 0 {
		known = strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("release v%d has no process type %q (it has %s)", e.Release, e.Type, known)
}

func (e *ProcessTypeError) Unwrap() error { return ErrUnknownProcessType }

// appRow is an app row locked for the rest of a transaction.
type appRow struct {
	id, name string
	// current is the current release's ID; "" when there is none.
	current string
}

// lockApp locks the row of app name for the transaction: every change to
// an app's releases, formations, deployments and routes holds it, so they
// apply one at a time.
func lockApp(ctx context.Context, tx pgx.Tx, name string) (appRow, error) {
	a := appRow{name: name}
	var current *string
	err := tx.QueryRow(ctx, `SELECT id::text, release_id::text FROM apps WHERE name = $1 FOR UPDATE`, name).Scan(&a.id, &current)
	if current != nil {
		a.current = *current
	}
	return a, err
}

// target returns the release an app is moving to: the new release of its
// pending deployment, else of its running one, else its current release.
// ok is false when the app has no release.
func (a appRow) target(ctx context.Context, tx pgx.Tx) (rel types.Release, ok bool, err error) {
	var id string
	err = tx.QueryRow(ctx, `SELECT new_release_id::text FROM deployments WHERE app_id = $1 AND status IN ('pending', 'running')
		ORDER BY status = 'pending' DESC LIMIT 1`, a.id).Scan(&id)
	switch {
	case err == nil:
	case errors.Is(err, pgx.ErrNoRows):
		id = a.current
	default:
		return types.Release{}, false, err
	}
	if id == "" {
		return types.Release{}, false, nil
	}
	rel, err = scanRelease(tx.QueryRow(ctx, `SELECT `+releaseColumns+` FROM releases WHERE id = $1`, id), a.name)
	return rel, err == nil, err
}

// counts returns the formation counts of a release, and the latest change.
func counts(ctx context.Context, tx pgx.Tx, releaseID string) (map[string]int, time.Time, error) {
	out := map[string]int{}
	var latest time.Time
	if releaseID == "" {
		return out, latest, nil
	}
	rows, err := tx.Query(ctx, `SELECT type, count, updated_at FROM formations WHERE release_id = $1`, releaseID)
	if err != nil {
		return nil, latest, err
	}
	defer rows.Close()
	for rows.Next() {
		var typ string
		var n int
		var updated time.Time
		if err := rows.Scan(&typ, &n, &updated); err != nil {
			return nil, latest, err
		}
		out[typ] = n
		if updated.After(latest) {
			latest = updated
		}
	}
	return out, latest.UTC(), rows.Err()
}

func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// checkReleaseConfig returns an ErrInvalid when config, the config of a
// new release of app a, is over types.MaxConfigTotal. The limit is checked
// when the config changes; only a config stored before the limit existed
// can be over it, and a release of it could not run (its formations would
// be too large for etcd).
func checkReleaseConfig(a appRow, config map[string]string) error {
	if n := types.ConfigSize(config); n > types.MaxConfigTotal {
		return types.ErrInvalid.WithMessage("the config of the release would be %d bytes of names and values, "+
			"the limit is %d (64 KiB); unset vars of app %s first", n, types.MaxConfigTotal, a.name)
	}
	return nil
}

func insertRelease(ctx context.Context, tx pgx.Tx, a appRow, r NewRelease) (types.Release, error) {
	if err := checkReleaseConfig(a, r.Config); err != nil {
		return types.Release{}, err
	}
	if r.Config == nil {
		r.Config = map[string]string{}
	}
	if r.Processes == nil {
		r.Processes = map[string]types.Process{}
	}
	row := tx.QueryRow(ctx, `INSERT INTO releases (app_id, version, description, image, slug, slug_path, config, processes)
		SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6, $7 FROM releases WHERE app_id = $1
		RETURNING `+releaseColumns, a.id, r.Description, r.Image, r.Slug, r.SlugPath, r.Config, r.Processes)
	return scanRelease(row, a.name)
}

// makeCurrent makes releaseID the current release of app appID and removes
// the formations of its other releases, but for the one of its pending
// deployment.
func makeCurrent(ctx context.Context, tx pgx.Tx, appID, releaseID string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM formations WHERE app_id = $1 AND release_id <> $2 AND release_id NOT IN (
			SELECT new_release_id FROM deployments WHERE app_id = $1 AND status = 'pending')`, appID, releaseID); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE apps SET release_id = $2 WHERE id = $1`, appID, releaseID)
	return err
}

// Formation returns the counts of the release app is moving to (the one
// being deployed, else the current one) for each of its process types. It
// returns ErrAppNotFound, or ErrNoRelease when the app has no release.
func (s *Store) Formation(ctx context.Context, app string) (types.Formation, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var f types.Formation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		f, err = formation(ctx, tx, a)
		return err
	})
	if err != nil {
		return types.Formation{}, appErr("read the formation of app", app, err)
	}
	return f, nil
}

func formation(ctx context.Context, tx pgx.Tx, a appRow) (types.Formation, error) {
	rel, ok, err := a.target(ctx, tx)
	if err != nil {
		return types.Formation{}, err
	}
	if !ok {
		return types.Formation{}, ErrNoRelease
	}
	cs, updated, err := counts(ctx, tx, rel.ID)
	if err != nil {
		return types.Formation{}, err
	}
	f := types.Formation{App: a.name, Release: rel.Version, Processes: map[string]int{}, UpdatedAt: updated}
	for typ, p := range rel.Processes {
		f.Processes[typ] = cs[typ]
		if p.System != nil && p.System.PerHost {
			f.PerHost = append(f.PerHost, typ)
		}
	}
	slices.Sort(f.PerHost)
	if f.UpdatedAt.IsZero() {
		f.UpdatedAt = rel.CreatedAt
	}
	return f, nil
}

// checkTypes returns a *ProcessTypeError for the first (sorted) of names
// that rel does not have.
func checkTypes(rel types.Release, names []string) error {
	slices.Sort(names)
	for _, typ := range names {
		if _, ok := rel.Processes[typ]; !ok {
			return &ProcessTypeError{Type: typ, Release: rel.Version, Known: slices.Sorted(maps.Keys(rel.Processes))}
		}
	}
	return nil
}

// Scale sets the counts of the process types in changes on the release app
// is moving to, and returns the formation after the change. The app's
// other releases with formations (the current one while a deployment runs,
// the running one while another is pending) get the counts too, for the
// types they have, so that they hold whichever release stays. It returns
// ErrAppNotFound, ErrNoRelease, or a *ProcessTypeError; the caller checks
// the bounds of the counts.
func (s *Store) Scale(ctx context.Context, app string, changes map[string]int) (types.Formation, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var f types.Formation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		rel, ok, err := a.target(ctx, tx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoRelease
		}
		if err := checkTypes(rel, slices.Collect(maps.Keys(changes))); err != nil {
			return err
		}
		for typ, n := range changes {
			if _, err := tx.Exec(ctx, `INSERT INTO formations (app_id, release_id, type, count) VALUES ($1, $2, $3, $4)
				ON CONFLICT (release_id, type) DO UPDATE SET count = EXCLUDED.count, updated_at = now()
				WHERE formations.count <> EXCLUDED.count`, a.id, rel.ID, typ, n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE formations SET count = $4, updated_at = now()
				WHERE app_id = $1 AND release_id <> $2 AND type = $3 AND count <> $4`, a.id, rel.ID, typ, n); err != nil {
				return err
			}
		}
		f, err = formation(ctx, tx, a)
		return err
	})
	if err != nil {
		return types.Formation{}, appErr("scale app", app, err)
	}
	return f, nil
}

// Restart sets restarted_at to now on the formations of app (all of its
// releases that have some) of process type typ, or of every type when typ
// is "". It returns ErrAppNotFound, ErrNoRelease, or a *ProcessTypeError
// when the release the app is moving to has no such type.
func (s *Store) Restart(ctx context.Context, app, typ string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		rel, ok, err := a.target(ctx, tx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoRelease
		}
		if typ != "" {
			if err := checkTypes(rel, []string{typ}); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE formations SET restarted_at = now() WHERE app_id = $1 AND ($2 = '' OR type = $2)`, a.id, typ)
		return err
	})
	return appErr("restart app", app, err)
}
