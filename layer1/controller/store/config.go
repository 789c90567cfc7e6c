package store

import (
	"context"
	"maps"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Config returns the config vars of app, or ErrAppNotFound.
func (s *Store) Config(ctx context.Context, app string) (map[string]string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	return readConfig(ctx, s.pool, app)
}

// ConfigChange is what UpdateConfig did.
type ConfigChange struct {
	// Config is the whole config after the change.
	Config map[string]string
	// Release is the release made with the new config, nil when none was
	// (the app has no release, or the config did not change).
	Release *types.Release
	// Deployment is the deployment of Release.
	Deployment Deployment
}

// UpdateConfig applies changes to the config vars of app in one
// transaction: a non-nil value sets the var, nil unsets it. When the config
// changed and the app has a release, the same transaction makes a new
// release with description: a copy of the newest release the app has or
// is moving to (the pending one, else the one being deployed, else the
// current one) with the new config, and deploys it like DeployRelease (not
// while the config is over types.MaxConfigTotal). It returns ErrAppNotFound for a missing app. The caller validates names and
// values; check gets the config before and after the change, and an error
// it returns undoes the change and is returned.
func (s *Store) UpdateConfig(ctx context.Context, app string, changes map[string]*string, description string,
	check func(before, after map[string]string) error) (ConfigChange, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var change ConfigChange
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		before, err := readConfig(ctx, tx, app)
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for name, value := range changes {
			if value == nil {
				batch.Queue(`DELETE FROM config_vars WHERE app_id = $1 AND name = $2`, a.id, name)
				continue
			}
			batch.Queue(`INSERT INTO config_vars (app_id, name, value) VALUES ($1, $2, $3)
				ON CONFLICT (app_id, name) DO UPDATE SET value = EXCLUDED.value`, a.id, name, *value)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		if change.Config, err = readConfig(ctx, tx, app); err != nil {
			return err
		}
		if maps.Equal(before, change.Config) {
			return nil
		}
		if err := check(before, change.Config); err != nil {
			return err
		}
		if types.ConfigSize(change.Config) > types.MaxConfigTotal {
			// A config over the limit (stored before the limit existed)
			// that a change made smaller: stored, but no release is made
			// of it until it is within the limit.
			return nil
		}
		base, ok, err := a.target(ctx, tx)
		if err != nil || !ok {
			return err
		}
		var slugPath string
		if err := tx.QueryRow(ctx, `SELECT slug_path FROM releases WHERE id = $1`, base.ID).Scan(&slugPath); err != nil {
			return err
		}
		rel, err := insertRelease(ctx, tx, a, NewRelease{
			Description: description,
			Image:       base.Image,
			Slug:        base.Slug,
			SlugPath:    slugPath,
			Config:      change.Config,
			Processes:   base.Processes,
		})
		if err != nil {
			return err
		}
		change.Release = &rel
		change.Deployment, err = deploy(ctx, tx, a, rel)
		return err
	})
	if err != nil {
		return ConfigChange{}, appErr("update config of app", app, err)
	}
	return change, nil
}

// querier is what readConfig needs of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readConfig(ctx context.Context, q querier, app string) (map[string]string, error) {
	// The LEFT JOIN yields one row with NULLs for an app without vars and
	// no row for a missing app.
	rows, err := q.Query(ctx, `SELECT c.name, c.value
		FROM apps a LEFT JOIN config_vars c ON c.app_id = a.id
		WHERE a.name = $1`, app)
	if err != nil {
		return nil, wrap("read config of app "+app, err)
	}
	defer rows.Close()
	config := map[string]string{}
	found := false
	for rows.Next() {
		found = true
		var name, value *string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, wrap("read config of app "+app, err)
		}
		if name != nil {
			config[*name] = *value
		}
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("read config of app "+app, err)
	}
	if !found {
		return nil, appErr("read config of app", app, pgx.ErrNoRows)
	}
	return config, nil
}
