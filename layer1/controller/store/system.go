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

// EnsureSystemApp makes sure the system app want exists with a current
// release of want.Image and want.Processes and the formation want.Counts,
// in one transaction. It is idempotent: an app already so changes nothing
// (and keeps its release), one whose image, config or processes differ gets a new
// release that becomes current at once (no deployment: the platform
// replaces its own jobs), with only its formations left. It is the
// platform's bootstrap (`gantryd up`), the only writer of these rows
// besides the controller; changed reports whether it wrote a new release.
func (s *Store) EnsureSystemApp(ctx context.Context, want SystemApp) (rel types.Release, changed bool, err error) {
	if err := want.Validate(); err != nil {
		return types.Release{}, false, err
	}
	if want.Config == nil {
		want.Config = map[string]string{}
	}
	procs, err := json.Marshal(want.Processes)
	if err != nil {
		return types.Release{}, false, fmt.Errorf("system app %s: %w", want.Name, err)
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
		same := false
		if a.current != "" {
			cur, err := scanRelease(tx.QueryRow(ctx, `SELECT `+releaseColumns+` FROM releases WHERE id = $1`, a.current), a.name)
			if err != nil {
				return err
			}
			curProcs, err := json.Marshal(cur.Processes)
			if err != nil {
				return err
			}
			same, rel = cur.Image == want.Image && maps.Equal(cur.Config, want.Config) && bytes.Equal(curProcs, procs), cur
		}
		if !same {
			if rel, err = insertRelease(ctx, tx, a, NewRelease{Description: want.Description, Image: want.Image, Config: want.Config, Processes: want.Processes}); err != nil {
				return err
			}
			if err := makeCurrent(ctx, tx, a.id, rel.ID); err != nil {
				return err
			}
			changed = true
		}
		for _, typ := range slices.Sorted(maps.Keys(want.Processes)) {
			if _, err := tx.Exec(ctx, `INSERT INTO formations (app_id, release_id, type, count) VALUES ($1, $2, $3, $4)
				ON CONFLICT (release_id, type) DO UPDATE SET count = EXCLUDED.count, updated_at = now()
				WHERE formations.count <> EXCLUDED.count`, a.id, rel.ID, typ, want.Counts[typ]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return types.Release{}, false, wrap("ensure system app "+want.Name, err)
	}
	return rel, changed, nil
}
