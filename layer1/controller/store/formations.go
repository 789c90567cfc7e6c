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

// Deployment statuses.
const (
	// DeployRunning: the new release's jobs are starting; the old
	// release's jobs keep serving.
	DeployRunning = "running"
	// DeployComplete: the new release is the current one; the old one's
	// formations are gone.
	DeployComplete = "complete"
	// DeployFailed: the new release's jobs did not come up in time; its
	// formations are gone and the old release stays current.
	DeployFailed = "failed"
	// DeploySuperseded: a newer release was deployed before this one
	// finished.
	DeploySuperseded = "superseded"
)

// ReleaseRef names one release of an app.
type ReleaseRef struct {
	ID      string
	Version int
}

// Deployment is a move of an app from one release to the next.
type Deployment struct {
	ID  string
	App string
	// Old is the release that was current when the deployment started;
	// zero when there was none.
	Old ReleaseRef
	New ReleaseRef
	// Status is one of the Deploy* constants; Error says why a deployment
	// failed.
	Status     string
	Error      string
	CreatedAt  time.Time
	FinishedAt time.Time
}

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
// running deployment, else its current release. ok is false when the app
// has no release.
func (a appRow) target(ctx context.Context, tx pgx.Tx) (rel types.Release, deploying bool, ok bool, err error) {
	var id string
	err = tx.QueryRow(ctx, `SELECT new_release_id::text FROM deployments WHERE app_id = $1 AND status = 'running'`, a.id).Scan(&id)
	switch {
	case err == nil:
		deploying = true
	case errors.Is(err, pgx.ErrNoRows):
		id = a.current
	default:
		return types.Release{}, false, false, err
	}
	if id == "" {
		return types.Release{}, false, false, nil
	}
	rel, err = scanRelease(tx.QueryRow(ctx, `SELECT `+releaseColumns+` FROM releases WHERE id = $1`, id), a.name)
	return rel, deploying, err == nil, err
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

// DeployRelease stores the next release of app from r with the app's
// current config vars (r.Config is ignored) and deploys it, in one
// transaction. It returns ErrAppNotFound for a missing app.
//
// The new release's counts come from the release the app is moving to (the
// one being deployed, else the current one) for the process types they
// share; a web process gets 1 when that release had none; other new types
// get 0. When the current release runs no job (there is none, or its counts
// are all 0) or the new one runs none, the new release becomes current at
// once and the deployment is complete. Otherwise the deployment is running:
// both releases' formations exist and the caller (the deployer) finishes it
// with FinishDeployment once the new jobs are up, or FailDeployment. A
// running deployment of another release is superseded: its release's
// formations are removed.
func (s *Store) DeployRelease(ctx context.Context, app string, r NewRelease) (types.Release, Deployment, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var rel types.Release
	var d Deployment
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		if r.Config, err = readConfig(ctx, tx, app); err != nil {
			return err
		}
		if rel, err = insertRelease(ctx, tx, a, r); err != nil {
			return err
		}
		d, err = deploy(ctx, tx, a, rel)
		return err
	})
	if err != nil {
		return types.Release{}, Deployment{}, appErr("deploy a release of app", app, err)
	}
	return rel, d, nil
}

func insertRelease(ctx context.Context, tx pgx.Tx, a appRow, r NewRelease) (types.Release, error) {
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

// deploy starts the deployment of rel, a new release of the locked app a
// (see DeployRelease).
func deploy(ctx context.Context, tx pgx.Tx, a appRow, rel types.Release) (Deployment, error) {
	d := Deployment{App: a.name, New: ReleaseRef{ID: rel.ID, Version: rel.Version}}
	base, deploying, hasBase, err := a.target(ctx, tx)
	if err != nil {
		return d, err
	}
	baseCounts := map[string]int{}
	if hasBase {
		if baseCounts, _, err = counts(ctx, tx, base.ID); err != nil {
			return d, err
		}
	}
	if deploying {
		// The release being deployed gives way to rel.
		if _, err := tx.Exec(ctx, `DELETE FROM formations WHERE release_id = $1`, base.ID); err != nil {
			return d, err
		}
		if _, err := tx.Exec(ctx, `UPDATE deployments SET status = 'superseded', finished_at = now()
			WHERE app_id = $1 AND status = 'running'`, a.id); err != nil {
			return d, err
		}
	}
	_, baseHasWeb := base.Processes["web"]
	newCounts := map[string]int{}
	for typ := range rel.Processes {
		n, ok := baseCounts[typ]
		if !ok && typ == "web" && !baseHasWeb {
			n = 1
		}
		newCounts[typ] = n
		if _, err := tx.Exec(ctx, `INSERT INTO formations (app_id, release_id, type, count) VALUES ($1, $2, $3, $4)`,
			a.id, rel.ID, typ, n); err != nil {
			return d, err
		}
	}
	currentCounts, _, err := counts(ctx, tx, a.current)
	if err != nil {
		return d, err
	}
	if a.current != "" {
		if err := tx.QueryRow(ctx, `SELECT version FROM releases WHERE id = $1`, a.current).Scan(&d.Old.Version); err != nil {
			return d, err
		}
		d.Old.ID = a.current
	}
	d.Status = DeployRunning
	if sum(currentCounts) == 0 || sum(newCounts) == 0 {
		d.Status = DeployComplete
		if err := makeCurrent(ctx, tx, a.id, rel.ID); err != nil {
			return d, err
		}
	}
	err = tx.QueryRow(ctx, `INSERT INTO deployments (app_id, old_release_id, new_release_id, status, finished_at)
		VALUES ($1, NULLIF($2, '')::uuid, $3, $4, CASE WHEN $4 = 'running' THEN NULL ELSE now() END)
		RETURNING id::text, created_at, COALESCE(finished_at, 'epoch')`,
		a.id, d.Old.ID, rel.ID, d.Status).Scan(&d.ID, &d.CreatedAt, &d.FinishedAt)
	d.CreatedAt = d.CreatedAt.UTC()
	if d.Status == DeployRunning {
		d.FinishedAt = time.Time{}
	} else {
		d.FinishedAt = d.FinishedAt.UTC()
	}
	return d, err
}

// makeCurrent makes releaseID the current release of app appID and removes
// the formations of its other releases.
func makeCurrent(ctx context.Context, tx pgx.Tx, appID, releaseID string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM formations WHERE app_id = $1 AND release_id <> $2`, appID, releaseID); err != nil {
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
	rel, _, ok, err := a.target(ctx, tx)
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
	for typ := range rel.Processes {
		f.Processes[typ] = cs[typ]
	}
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
// is moving to, and returns the formation after the change. While a
// deployment runs, the current release's counts change too, for the types
// it has, so that they hold whichever release stays. It returns
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
		rel, deploying, ok, err := a.target(ctx, tx)
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
			if deploying && a.current != "" {
				if _, err := tx.Exec(ctx, `UPDATE formations SET count = $3, updated_at = now()
					WHERE release_id = $1 AND type = $2 AND count <> $3`, a.current, typ, n); err != nil {
					return err
				}
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
		rel, _, ok, err := a.target(ctx, tx)
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

// deploymentColumns selects a deployment from deployments d JOIN apps a
// JOIN releases n (new) LEFT JOIN releases o (old), for scanDeployment.
const deploymentColumns = `d.id::text, a.name, COALESCE(o.id::text, ''), COALESCE(o.version, 0), n.id::text, n.version,
	d.status, d.error, d.created_at, COALESCE(d.finished_at, 'epoch')`

const deploymentFrom = `deployments d JOIN apps a ON a.id = d.app_id JOIN releases n ON n.id = d.new_release_id
	LEFT JOIN releases o ON o.id = d.old_release_id`

func scanDeployment(row pgx.Row) (Deployment, error) {
	var d Deployment
	err := row.Scan(&d.ID, &d.App, &d.Old.ID, &d.Old.Version, &d.New.ID, &d.New.Version,
		&d.Status, &d.Error, &d.CreatedAt, &d.FinishedAt)
	d.CreatedAt = d.CreatedAt.UTC()
	if d.FinishedAt.Equal(time.Unix(0, 0)) {
		d.FinishedAt = time.Time{}
	} else {
		d.FinishedAt = d.FinishedAt.UTC()
	}
	return d, err
}

// RunningDeployments returns the running deployments of every app, oldest
// first.
func (s *Store) RunningDeployments(ctx context.Context) ([]Deployment, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+deploymentColumns+` FROM `+deploymentFrom+`
		WHERE d.status = 'running' ORDER BY d.created_at, d.id`)
	if err != nil {
		return nil, wrap("list running deployments", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Deployment, error) { return scanDeployment(r) })
	return ds, wrap("list running deployments", err)
}

// DeploymentProgress returns deployment id and the counts its new release
// asks for, by process type. It returns ErrDeploymentNotFound when the
// deployment is gone (its app was deleted).
func (s *Store) DeploymentProgress(ctx context.Context, id string) (Deployment, map[string]int, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var d Deployment
	var cs map[string]int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		d, err = scanDeployment(tx.QueryRow(ctx, `SELECT `+deploymentColumns+` FROM `+deploymentFrom+` WHERE d.id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrDeploymentNotFound
		}
		if err != nil {
			return err
		}
		cs, _, err = counts(ctx, tx, d.New.ID)
		return err
	})
	if err != nil {
		return Deployment{}, nil, wrap("read deployment "+id, err)
	}
	return d, cs, nil
}

// FinishDeployment completes the running deployment id: its new release
// becomes current and the other releases' formations are removed. It
// returns false when the deployment is no longer running (or is gone).
func (s *Store) FinishDeployment(ctx context.Context, id string) (bool, error) {
	return s.endDeployment(ctx, id, DeployComplete, "")
}

// FailDeployment ends the running deployment id as failed for reason: the
// new release's formations are removed and the current release stays. It
// returns false when the deployment is no longer running (or is gone).
func (s *Store) FailDeployment(ctx context.Context, id, reason string) (bool, error) {
	return s.endDeployment(ctx, id, DeployFailed, reason)
}

func (s *Store) endDeployment(ctx context.Context, id, status, reason string) (bool, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	ended := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var app string
		err := tx.QueryRow(ctx, `SELECT a.name FROM deployments d JOIN apps a ON a.id = d.app_id WHERE d.id = $1`, id).Scan(&app)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		a, err := lockApp(ctx, tx, app)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var newID, current string
		err = tx.QueryRow(ctx, `SELECT new_release_id::text, status FROM deployments WHERE id = $1`, id).Scan(&newID, &current)
		if errors.Is(err, pgx.ErrNoRows) || current != DeployRunning {
			return nil
		}
		if err != nil {
			return err
		}
		if status == DeployComplete {
			err = makeCurrent(ctx, tx, a.id, newID)
		} else {
			_, err = tx.Exec(ctx, `DELETE FROM formations WHERE release_id = $1`, newID)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE deployments SET status = $2, error = $3, finished_at = now() WHERE id = $1`,
			id, status, reason); err != nil {
			return err
		}
		ended = true
		return nil
	})
	return ended, wrap("end deployment "+id, err)
}
