package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// MaxDeployTimeout is the longest deploy timeout an app may have, in
// seconds.
const MaxDeployTimeout = 3600

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
	// zero when there was none, or while the deployment is pending.
	Old ReleaseRef
	New ReleaseRef
	// Status is one of the Deploy* constants.
	Status   string
	Strategy string
	// Timeout is how long, in seconds, a new job has to come up; 0 means
	// the controller's default.
	Timeout int
	// FromRunning is true when the old release ran jobs when the
	// deployment started: the new release replaces them in steps, and a
	// failure rolls back to the old release.
	FromRunning bool
	// Step counts the changes of the deployment; AdvanceDeployment applies
	// a change only to the step it was computed from.
	Step int
	// Error says why the deployment failed or was rolled back; FailedJob
	// names the job that failed and LastLines are its last lines of
	// output.
	Error     string
	FailedJob string
	LastLines []string
	CreatedAt time.Time
	// StartedAt is when it stopped being pending; RollbackAt when it
	// started rolling back; FinishedAt when it ended. Zero until then.
	StartedAt  time.Time
	RollbackAt time.Time
	FinishedAt time.Time
	UpdatedAt  time.Time
	// Processes are the deployment's steps, by process type.
	Processes []DeploymentProcess
	// ConfigRestored is true when the deployment rolled back and set the
	// app's config vars back to the old release's (see AdvanceDeployment).
	ConfigRestored bool
}

// Active reports whether the deployment is running or rolling back.
func (d Deployment) Active() bool {
	return d.Status == types.DeployRunning || d.Status == types.DeployRollingBack
}

// Ended reports whether the deployment is over.
func (d Deployment) Ended() bool {
	return !d.Active() && d.Status != types.DeployPending
}

// DeploymentProcess is the step of one process type of a deployment.
type DeploymentProcess struct {
	Type string
	// Started is how many of the new release's jobs are asked for so far,
	// OldLeft how many of the old release's; while the deployment is
	// active, the etcd counts are the smaller of these and the formations'
	// counts.
	Started int
	OldLeft int
	// Up and Want are the progress at the last look: new jobs up, and the
	// new release's count.
	Up   int
	Want int
	// StepAt is when Started last grew.
	StepAt time.Time
	// NewCount and OldCount are the formation counts of the new and the
	// old release now (read by ActiveDeployments only).
	NewCount int
	OldCount int
	// PerHost is true when the new release's process of the type runs one
	// job on every eligible host (types.SystemProcess.PerHost): its counts
	// only say whether a release's formation exists (read by
	// ActiveDeployments only).
	PerHost bool
}

// DeploySettings are an app's deploy settings.
type DeploySettings struct {
	Strategy string
	// Timeout is in seconds; 0 means the controller's default.
	Timeout int
}

// DeployRelease stores the next release of app from r with the app's
// current config vars (r.Config is ignored) and deploys it, in one
// transaction. It returns ErrAppNotFound for a missing app.
//
// When the app has an active deployment (running or rolling back), the new
// one is pending: it starts when the active one ends, and a newer release
// supersedes it before then. Otherwise it starts at once (see start).
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

// deploy makes the deployment of rel, a new release of the locked app a,
// and its formations: rel's counts come from the release the app is moving
// to (see target) for the process types they share; a web process gets 1
// when that release had none; other new types get 0. The deployment is
// pending behind an active one (a pending one it replaces is superseded
// and its formations go), else it starts at once.
func deploy(ctx context.Context, tx pgx.Tx, a appRow, rel types.Release) (Deployment, error) {
	base, hasBase, err := a.target(ctx, tx)
	if err != nil {
		return Deployment{}, err
	}
	baseCounts := map[string]int{}
	if hasBase {
		if baseCounts, _, err = counts(ctx, tx, base.ID); err != nil {
			return Deployment{}, err
		}
	}
	_, baseHasWeb := base.Processes["web"]
	for typ := range rel.Processes {
		n, ok := baseCounts[typ]
		if !ok && typ == "web" && !baseHasWeb {
			n = 1
		}
		if _, err := tx.Exec(ctx, `INSERT INTO formations (app_id, release_id, type, count) VALUES ($1, $2, $3, $4)`,
			a.id, rel.ID, typ, n); err != nil {
			return Deployment{}, err
		}
	}
	var active bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deployments WHERE app_id = $1 AND status IN ('running', 'rolling_back'))`,
		a.id).Scan(&active)
	if err != nil {
		return Deployment{}, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM formations WHERE release_id IN (
			SELECT new_release_id FROM deployments WHERE app_id = $1 AND status = 'pending')`, a.id); err != nil {
		return Deployment{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE deployments SET status = 'superseded', finished_at = now(), updated_at = now(), step = step + 1
		WHERE app_id = $1 AND status = 'pending'`, a.id); err != nil {
		return Deployment{}, err
	}
	var id string
	err = tx.QueryRow(ctx, `INSERT INTO deployments (app_id, new_release_id, status, strategy, timeout)
		SELECT id, $2, 'pending', deploy_strategy, deploy_timeout FROM apps WHERE id = $1 RETURNING id::text`,
		a.id, rel.ID).Scan(&id)
	if err != nil {
		return Deployment{}, err
	}
	if !active {
		if err := start(ctx, tx, a, id, rel.ID); err != nil {
			return Deployment{}, err
		}
	}
	return getDeployment(ctx, tx, id)
}

// start starts the pending deployment id of release relID (whose
// formations exist), of the locked app a that has no active deployment:
//
//   - When the new release runs no job, it becomes current at once and the
//     deployment is complete.
//   - When the current release runs no job (there is none, or its counts
//     are all 0), the new release becomes current at once with all its
//     jobs asked for, and the deployment runs until they are up (or
//     fails: there is nothing to roll back to).
//   - Otherwise the deployment runs from the current release: the
//     deployer starts the new jobs and stops the old ones in steps
//     (AdvanceDeployment), all at once or one by one.
func start(ctx context.Context, tx pgx.Tx, a appRow, id, relID string) error {
	newCounts, _, err := counts(ctx, tx, relID)
	if err != nil {
		return err
	}
	oldCounts, _, err := counts(ctx, tx, a.current)
	if err != nil {
		return err
	}
	var strategy string
	if err := tx.QueryRow(ctx, `SELECT strategy FROM deployments WHERE id = $1`, id).Scan(&strategy); err != nil {
		return err
	}
	fromRunning := sum(oldCounts) > 0 && sum(newCounts) > 0
	status := types.DeployRunning
	if sum(newCounts) == 0 {
		status = types.DeployComplete
	}
	if !fromRunning {
		if err := makeCurrent(ctx, tx, a.id, relID); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE deployments SET status = $2, old_release_id = NULLIF($3, '')::uuid, from_running = $4,
		started_at = now(), updated_at = now(), step = step + 1,
		finished_at = CASE WHEN $2 = 'complete' THEN now() END WHERE id = $1`,
		id, status, a.current, fromRunning); err != nil {
		return err
	}
	for _, typ := range slices.Sorted(maps.Keys(mergeKeys(newCounts, oldCounts))) {
		// Without old jobs to replace, or all at once, every new job is
		// asked for at once; one by one starts from none.
		started := newCounts[typ]
		if fromRunning && strategy == types.StrategyOneByOne {
			started = 0
		}
		if _, err := tx.Exec(ctx, `INSERT INTO deployment_processes (deployment_id, type, started, old_left, want)
			VALUES ($1, $2, $3, $4, $5)`, id, typ, started, oldCounts[typ], newCounts[typ]); err != nil {
			return err
		}
	}
	return nil
}

// mergeKeys returns a map with the keys of a and b.
func mergeKeys(a, b map[string]int) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// deploymentColumns selects a deployment from deployments d JOIN apps a
// JOIN releases n (new) LEFT JOIN releases o (old), for scanDeployment.
const deploymentColumns = `d.id::text, a.name, COALESCE(o.id::text, ''), COALESCE(o.version, 0), n.id::text, n.version,
	d.status, d.strategy, COALESCE(d.timeout, 0), d.from_running, d.step, d.error, d.failed_job, d.last_lines,
	d.created_at, COALESCE(d.started_at, 'epoch'), COALESCE(d.rollback_at, 'epoch'), COALESCE(d.finished_at, 'epoch'), d.updated_at,
	d.config_restored`

const deploymentFrom = `deployments d JOIN apps a ON a.id = d.app_id JOIN releases n ON n.id = d.new_release_id
	LEFT JOIN releases o ON o.id = d.old_release_id`

// optionalTime turns the epoch of a COALESCE into the zero time.
func optionalTime(t time.Time) time.Time {
	if t.Equal(time.Unix(0, 0)) {
		return time.Time{}
	}
	return t.UTC()
}

func scanDeployment(row pgx.Row) (Deployment, error) {
	var d Deployment
	err := row.Scan(&d.ID, &d.App, &d.Old.ID, &d.Old.Version, &d.New.ID, &d.New.Version,
		&d.Status, &d.Strategy, &d.Timeout, &d.FromRunning, &d.Step, &d.Error, &d.FailedJob, &d.LastLines,
		&d.CreatedAt, &d.StartedAt, &d.RollbackAt, &d.FinishedAt, &d.UpdatedAt, &d.ConfigRestored)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	d.StartedAt, d.RollbackAt, d.FinishedAt = optionalTime(d.StartedAt), optionalTime(d.RollbackAt), optionalTime(d.FinishedAt)
	return d, err
}

// querierRow is what the deployment readers need of a pool or a
// transaction.
type querierRow interface {
	querier
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// getDeployment reads deployment id with its processes; the counts of its
// releases' formations are read too while it is active.
func getDeployment(ctx context.Context, q querierRow, id string) (Deployment, error) {
	d, err := scanDeployment(q.QueryRow(ctx, `SELECT `+deploymentColumns+` FROM `+deploymentFrom+` WHERE d.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Deployment{}, ErrDeploymentNotFound
	}
	if err != nil {
		return Deployment{}, err
	}
	rows, err := q.Query(ctx, `SELECT p.type, p.started, p.old_left, p.up, p.want, p.step_at,
			COALESCE(nf.count, 0), COALESCE(of.count, 0),
			COALESCE((nr.processes -> p.type -> 'system' ->> 'per_host')::boolean, false)
		FROM deployment_processes p JOIN deployments d ON d.id = p.deployment_id
		JOIN releases nr ON nr.id = d.new_release_id
		LEFT JOIN formations nf ON nf.release_id = d.new_release_id AND nf.type = p.type
		LEFT JOIN formations of ON of.release_id = d.old_release_id AND of.type = p.type
		WHERE p.deployment_id = $1 ORDER BY p.type`, id)
	if err != nil {
		return Deployment{}, err
	}
	d.Processes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeploymentProcess, error) {
		var p DeploymentProcess
		err := r.Scan(&p.Type, &p.Started, &p.OldLeft, &p.Up, &p.Want, &p.StepAt, &p.NewCount, &p.OldCount, &p.PerHost)
		p.StepAt = p.StepAt.UTC()
		return p, err
	})
	return d, err
}

// GetDeployment returns deployment id of app. It returns ErrAppNotFound, or
// ErrDeploymentNotFound (also for an ID that is not a UUID).
func (s *Store) GetDeployment(ctx context.Context, app, id string) (Deployment, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var d Deployment
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var found bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deployments d JOIN apps a ON a.id = d.app_id
			WHERE a.name = $1 AND d.id::text = $2)`, app, id).Scan(&found)
		if err != nil {
			return err
		}
		if !found {
			if _, err := getAppTx(ctx, tx, app); err != nil {
				return err
			}
			return ErrDeploymentNotFound
		}
		d, err = getDeployment(ctx, tx, id)
		return err
	})
	if err != nil {
		return Deployment{}, appErr(fmt.Sprintf("get deployment %s of app", id), app, err)
	}
	return d, nil
}

// getAppTx checks that app exists, in tx; pgx.ErrNoRows when it does not.
func getAppTx(ctx context.Context, tx pgx.Tx, app string) (string, error) {
	var id string
	err := tx.QueryRow(ctx, `SELECT id::text FROM apps WHERE name = $1`, app).Scan(&id)
	return id, err
}

// ListDeployments returns the newest limit deployments of app, newest
// first, or ErrAppNotFound.
func (s *Store) ListDeployments(ctx context.Context, app string, limit int) ([]Deployment, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var out []Deployment
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		appID, err := getAppTx(ctx, tx, app)
		if err != nil {
			return err
		}
		out, err = deploymentsOf(ctx, tx, `SELECT id::text FROM deployments WHERE app_id = $1 ORDER BY created_at DESC, id LIMIT $2`, appID, limit)
		return err
	})
	if err != nil {
		return nil, appErr("list the deployments of app", app, err)
	}
	return out, nil
}

// deploymentsOf returns the deployments whose IDs query selects, in its
// order.
func deploymentsOf(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]Deployment, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make([]Deployment, 0, len(ids))
	for _, id := range ids {
		d, err := getDeployment(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ActiveDeployments returns the running and rolling-back deployments of
// every app, oldest first, with the formation counts of their releases.
func (s *Store) ActiveDeployments(ctx context.Context) ([]Deployment, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var out []Deployment
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		out, err = deploymentsOf(ctx, tx, `SELECT id::text FROM deployments WHERE status IN ('running', 'rolling_back') ORDER BY created_at, id`)
		return err
	})
	return out, wrap("list the active deployments", err)
}

// DeploymentChange is the next step of an active deployment, computed from
// the deployment at Step.
type DeploymentChange struct {
	// Status is the new status: types.DeployRunning (or types.DeployRollingBack) to
	// stay, types.DeployRollingBack to start rolling back, types.DeployComplete,
	// types.DeployFailed or types.DeployRolledBack to end.
	Status string
	// Processes are the new steps of the process types (all of them).
	Processes []DeploymentProcess
	// Error, FailedJob and LastLines say why a deployment fails or rolls
	// back.
	Error     string
	FailedJob string
	LastLines []string
}

// Advance is what AdvanceDeployment did.
type Advance struct {
	// Applied is false when the deployment was no longer at the step the
	// change was computed from (another deployer moved it first, or it
	// ended): nothing was changed.
	Applied bool
	// Deployment is the deployment after the change.
	Deployment Deployment
	// Next is the app's pending deployment that started because this one
	// ended; nil when none did.
	Next *Deployment
}

// AdvanceDeployment applies change to deployment id if it is still at
// step. Ending it completes it (the new release becomes current and the
// other releases' formations go), rolls it back (the new release's
// formations go), or fails it (nothing changes but the status); the app's
// pending deployment, if any, then starts. It returns
// ErrDeploymentNotFound when the deployment is gone with its app.
func (s *Store) AdvanceDeployment(ctx context.Context, id string, step int, change DeploymentChange) (Advance, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var adv Advance
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var app string
		err := tx.QueryRow(ctx, `SELECT a.name FROM deployments d JOIN apps a ON a.id = d.app_id WHERE d.id = $1`, id).Scan(&app)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrDeploymentNotFound
		}
		if err != nil {
			return err
		}
		a, err := lockApp(ctx, tx, app)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrDeploymentNotFound
		}
		if err != nil {
			return err
		}
		cur, err := getDeployment(ctx, tx, id)
		if err != nil {
			return err
		}
		adv = Advance{Deployment: cur}
		if cur.Step != step || !cur.Active() {
			return nil
		}
		if err := applyChange(ctx, tx, a, cur, change); err != nil {
			return err
		}
		adv.Applied = true
		if adv.Deployment, err = getDeployment(ctx, tx, id); err != nil {
			return err
		}
		if adv.Deployment.Active() {
			return nil
		}
		// The app's next deployment starts from the release it ended on.
		a, err = lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		var next, nextRel string
		err = tx.QueryRow(ctx, `SELECT id::text, new_release_id::text FROM deployments WHERE app_id = $1 AND status = 'pending'`,
			a.id).Scan(&next, &nextRel)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := start(ctx, tx, a, next, nextRel); err != nil {
			return err
		}
		n, err := getDeployment(ctx, tx, next)
		adv.Next = &n
		return err
	})
	if err != nil {
		return Advance{}, wrap("advance deployment "+id, err)
	}
	return adv, nil
}

// applyChange writes change to the deployment cur of the locked app a.
func applyChange(ctx context.Context, tx pgx.Tx, a appRow, cur Deployment, change DeploymentChange) error {
	for _, p := range change.Processes {
		if _, err := tx.Exec(ctx, `UPDATE deployment_processes SET started = $3, old_left = $4, up = $5, want = $6, step_at = $7
			WHERE deployment_id = $1 AND type = $2`, cur.ID, p.Type, p.Started, p.OldLeft, p.Up, p.Want, p.StepAt); err != nil {
			return err
		}
	}
	switch change.Status {
	case types.DeployComplete:
		if err := makeCurrent(ctx, tx, a.id, cur.New.ID); err != nil {
			return err
		}
	case types.DeployRolledBack:
		if _, err := tx.Exec(ctx, `DELETE FROM formations WHERE release_id = $1`, cur.New.ID); err != nil {
			return err
		}
		if err := restoreConfig(ctx, tx, a, cur); err != nil {
			return err
		}
	}
	lastLines := change.LastLines
	if lastLines == nil {
		lastLines = cur.LastLines
	}
	if lastLines == nil {
		lastLines = []string{}
	}
	errText, failedJob := cur.Error, cur.FailedJob
	if change.Error != "" {
		errText, failedJob = change.Error, change.FailedJob
	}
	_, err := tx.Exec(ctx, `UPDATE deployments SET status = $2, error = $3, failed_job = $4, last_lines = $5,
			step = step + 1, updated_at = now(),
			rollback_at = CASE WHEN $2 = 'rolling_back' AND status <> 'rolling_back' THEN now() ELSE rollback_at END,
			finished_at = CASE WHEN $2 IN ('complete', 'failed', 'rolled_back') THEN now() END
		WHERE id = $1`, cur.ID, change.Status, errText, failedJob, lastLines)
	return err
}

// restoreConfig sets the config vars of the locked app a back to those of
// the old release of deployment cur, which rolled back, when the new
// release changed them (a config change, or a rollback to a release with
// other vars) and no later change did: the vars stay those of the release
// that runs, and the next release (a push) does not take the values that
// failed. It records that in the deployment's config_restored.
func restoreConfig(ctx context.Context, tx pgx.Tx, a appRow, cur Deployment) error {
	if cur.Old.ID == "" {
		return nil
	}
	var newConfig, oldConfig map[string]string
	if err := tx.QueryRow(ctx, `SELECT n.config, o.config FROM releases n, releases o WHERE n.id = $1 AND o.id = $2`,
		cur.New.ID, cur.Old.ID).Scan(&newConfig, &oldConfig); err != nil {
		return err
	}
	current, err := readConfig(ctx, tx, a.name)
	if err != nil {
		return err
	}
	if maps.Equal(newConfig, oldConfig) || !maps.Equal(current, newConfig) {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM config_vars WHERE app_id = $1`, a.id); err != nil {
		return err
	}
	batch := &pgx.Batch{}
	for name, value := range oldConfig {
		batch.Queue(`INSERT INTO config_vars (app_id, name, value) VALUES ($1, $2, $3)`, a.id, name, value)
	}
	batch.Queue(`UPDATE deployments SET config_restored = true WHERE id = $1`, cur.ID)
	return tx.SendBatch(ctx, batch).Close()
}

// GetDeploySettings returns the deploy settings of app, or ErrAppNotFound.
func (s *Store) GetDeploySettings(ctx context.Context, app string) (DeploySettings, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var st DeploySettings
	err := s.pool.QueryRow(ctx, `SELECT deploy_strategy, COALESCE(deploy_timeout, 0) FROM apps WHERE name = $1`, app).
		Scan(&st.Strategy, &st.Timeout)
	if err != nil {
		return DeploySettings{}, appErr("read the deploy settings of app", app, err)
	}
	return st, nil
}

// UpdateDeploySettings sets the strategy and the timeout (seconds, 0 for
// the controller's default) of app where they are not nil, and returns the
// settings after the change. The caller validates them. The deployments
// made afterwards use them.
func (s *Store) UpdateDeploySettings(ctx context.Context, app string, strategy *string, timeout *int) (DeploySettings, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var st DeploySettings
	err := s.pool.QueryRow(ctx, `UPDATE apps SET deploy_strategy = COALESCE($2, deploy_strategy),
			deploy_timeout = CASE WHEN $3::integer IS NULL THEN deploy_timeout ELSE NULLIF($3::integer, 0) END
		WHERE name = $1 RETURNING deploy_strategy, COALESCE(deploy_timeout, 0)`, app, strategy, timeout).
		Scan(&st.Strategy, &st.Timeout)
	if err != nil {
		return DeploySettings{}, appErr("update the deploy settings of app", app, err)
	}
	return st, nil
}
