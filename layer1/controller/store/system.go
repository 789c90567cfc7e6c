package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// SystemApp is one of the platform's own apps (gantry-controller,
// gantry-router, ...) as the platform wants it: the image of its current
// release, its processes (with their types.SystemProcess) and the count of
// each.
type SystemApp struct {
	// Name is the app's name, with types.SystemAppPrefix.
	Name string
	// Image is the image of its release (gantry/platform:<version>).
	Image string
	// Description says what made a new release ("gantryd up").
	Description string
	// Config is the release's environment (the controller's build
	// settings); nil means none.
	Config map[string]string
	// Processes are the release's processes; Counts their formation, by
	// type (a type without a count runs no job).
	Processes map[string]types.Process
	Counts    map[string]int
}

// Validate reports a name without the system prefix, a release without
// an image or processes, and counts of unknown types.
func (a SystemApp) Validate() error {
	var errs []error
	if !types.IsSystemAppName(a.Name) || types.ValidateAppName(a.Name) != nil {
		errs = append(errs, fmt.Errorf("%q is not a system app name", a.Name))
	}
	if a.Image == "" {
		errs = append(errs, errors.New("no image"))
	}
	if len(a.Processes) == 0 {
		errs = append(errs, errors.New("no process"))
	}
	for typ, n := range a.Counts {
		if _, ok := a.Processes[typ]; !ok || n < 0 {
			errs = append(errs, fmt.Errorf("count %d of process type %q", n, typ))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("system app %s: %w", a.Name, err)
	}
	return nil
}

// sharesPorts reports whether the jobs of rel can run next to the jobs
// that replace them: each of its processes with a port is checked on its
// readiness socket (types.SystemProcess.Ready), which the platform sets
// only on processes that share their port (SO_REUSEPORT, the router's
// handover). Releases made before the platform deployed its own apps
// have none: their jobs are replaced at once.
func sharesPorts(rel types.Release) bool {
	for _, p := range rel.Processes {
		if p.System != nil && p.System.Port > 0 && !p.System.Ready {
			return false
		}
	}
	return true
}

// SystemAppChange is what EnsureSystemApp did to a system app.
type SystemAppChange struct {
	// Release is the app's release that has want's image and processes.
	Release types.Release
	// Changed is true when that release is new.
	Changed bool
	// Deployment, when not nil, is the deployment of Release in place of
	// a current one that runs jobs (see EnsureSystemApp): a new one, or
	// one an earlier call made that is still under way.
	Deployment *Deployment
}

// EnsureSystemApp makes sure the system app want exists with a release of
// want.Image and want.Processes and the formation want.Counts, in one
// transaction. It is idempotent: an app already so changes nothing (and
// keeps its release). A new app's release, or one replacing a current
// release that runs no job or whose jobs cannot share their ports with
// the new ones (sharesPorts), becomes current at once. One whose image,
// config or processes differ from a current release that runs jobs (an
// upgrade) is deployed like any app's release (the usual deployments,
// the app's strategy: one by one unless changed), and the change returns
// the deployment: the controller's deployer moves it, and the new release
// becomes current once its jobs are up. It is the platform's bootstrap
// and upgrade (`gantryd up`), the only writer of these rows besides the
// controller.
func (s *Store) EnsureSystemApp(ctx context.Context, want SystemApp) (SystemAppChange, error) {
	var ch SystemAppChange
	if err := want.Validate(); err != nil {
		return ch, err
	}
	if want.Config == nil {
		want.Config = map[string]string{}
	}
	procs, err := json.Marshal(want.Processes)
	if err != nil {
		return ch, fmt.Errorf("system app %s: %w", want.Name, err)
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO apps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, want.Name); err != nil {
			return err
		}
		a, err := lockApp(ctx, tx, want.Name)
		if err != nil {
			return err
		}
		// The release to compare with: the one a deployment under way
		// moves to, else the current one.
		same, running := false, false
		base, hasBase, err := a.target(ctx, tx)
		if err != nil {
			return err
		}
		if hasBase {
			baseProcs, err := json.Marshal(base.Processes)
			if err != nil {
				return err
			}
			same = base.Image == want.Image && maps.Equal(base.Config, want.Config) && bytes.Equal(baseProcs, procs)
			ch.Release = base
		}
		if !same && a.current != "" {
			n, _, err := counts(ctx, tx, a.current)
			if err != nil {
				return err
			}
			cur, err := scanRelease(tx.QueryRow(ctx, `SELECT `+releaseColumns+` FROM releases WHERE id = $1`, a.current), a.name)
			if err != nil {
				return err
			}
			running = sum(n) > 0 && sharesPorts(cur)
		}
		switch {
		case same && ch.Release.ID != a.current:
			// An earlier call's deployment, still under way.
			var id string
			err := tx.QueryRow(ctx, `SELECT id::text FROM deployments WHERE app_id = $1 AND new_release_id = $2
				AND status IN ('pending', 'running') LIMIT 1`, a.id, ch.Release.ID).Scan(&id)
			if err != nil {
				return err
			}
			d, err := getDeployment(ctx, tx, id)
			if err != nil {
				return err
			}
			ch.Deployment = &d
		case same:
		case running:
			if ch.Release, err = insertRelease(ctx, tx, a, NewRelease{Description: want.Description, Image: want.Image, Config: want.Config, Processes: want.Processes}); err != nil {
				return err
			}
			d, err := deploy(ctx, tx, a, ch.Release)
			if err != nil {
				return err
			}
			ch.Changed, ch.Deployment = true, &d
		default:
			if ch.Release, err = insertRelease(ctx, tx, a, NewRelease{Description: want.Description, Image: want.Image, Config: want.Config, Processes: want.Processes}); err != nil {
				return err
			}
			if err := makeCurrent(ctx, tx, a.id, ch.Release.ID); err != nil {
				return err
			}
			ch.Changed = true
		}
		for _, typ := range slices.Sorted(maps.Keys(want.Processes)) {
			if _, err := tx.Exec(ctx, `INSERT INTO formations (app_id, release_id, type, count) VALUES ($1, $2, $3, $4)
				ON CONFLICT (release_id, type) DO UPDATE SET count = EXCLUDED.count, updated_at = now()
				WHERE formations.count <> EXCLUDED.count`, a.id, ch.Release.ID, typ, want.Counts[typ]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return SystemAppChange{}, wrap("ensure system app "+want.Name, err)
	}
	return ch, nil
}
