package gitreceiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// ErrNoApp is returned by an AppChecker for an app that does not exist.
var ErrNoApp = errors.New("no such app")

// App is what the receiver needs to know of an app.
type App struct {
	// ID is the app's identity: an app created under the name of a
	// destroyed one has another ID.
	ID string
	// CreatedAt is when the app was created; zero when unknown. It tells
	// whether a repository that records no ID predates the app.
	CreatedAt time.Time
}

// appIDOption is the git config option (section gantry) of a repository
// that records the ID of the app it belongs to.
const appIDOption = "appid"

// trashPrefix starts the names of repositories being removed.
const trashPrefix = ".trash-"

// repoPath returns where the bare repository of app lives.
func (s *Server) repoPath(app string) string {
	return filepath.Join(s.cfg.RepoDir, app+".git")
}

// ensureRepo returns the path of the bare repository of app, creating it
// (with go-git) and installing the proc-receive hook. A repository that
// belongs to an earlier app of the same name (it records another ID, or it
// records none and is older than the app) is removed first, so that a new
// app never serves an old app's refs.
func (s *Server) ensureRepo(app App, name string) (string, error) {
	s.repoMu.Lock()
	defer s.repoMu.Unlock()
	path := s.repoPath(name)
	r, err := git.PlainOpen(path)
	switch {
	case err == nil:
		recorded, rerr := recordedAppID(r)
		if rerr != nil {
			return "", fmt.Errorf("read %s: %w", path, rerr)
		}
		if recorded == app.ID || (recorded == "" && !predates(path, app.CreatedAt)) {
			if recorded == "" {
				if err := recordAppID(r, app.ID); err != nil {
					return "", fmt.Errorf("record the app of %s: %w", path, err)
				}
			}
			break
		}
		s.log.Info("removing the repository of an earlier app of the same name", "app", name, "recorded_id", recorded, "id", app.ID)
		if err := s.removeRepo(path); err != nil {
			return "", err
		}
		r = nil
	case errors.Is(err, git.ErrRepositoryNotExists):
		r = nil
	default:
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	if r == nil {
		r, err = git.PlainInit(path, true)
		if err != nil {
			return "", fmt.Errorf("init %s: %w", path, err)
		}
		// Clones check out main.
		if err := r.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName("main"))); err != nil {
			return "", fmt.Errorf("set HEAD of %s: %w", path, err)
		}
		if err := recordAppID(r, app.ID); err != nil {
			return "", fmt.Errorf("record the app of %s: %w", path, err)
		}
	}
	if err := s.writeHook(path); err != nil {
		return "", err
	}
	return path, nil
}

// recordedAppID returns the app ID the repository records, "" when none.
func recordedAppID(r *git.Repository) (string, error) {
	cfg, err := r.Config()
	if err != nil {
		return "", err
	}
	return cfg.Raw.Section("gantry").Option(appIDOption), nil
}

func recordAppID(r *git.Repository, id string) error {
	cfg, err := r.Config()
	if err != nil {
		return err
	}
	cfg.Raw.Section("gantry").SetOption(appIDOption, id)
	return r.SetConfig(cfg)
}

// predates reports whether the repository at path was made before t, by
// the time its HEAD was written (git rewrites HEAD only when it changes
// what HEAD names, which the receiver never does).
func predates(path string, t time.Time) bool {
	if t.IsZero() {
		return false
	}
	st, err := os.Stat(filepath.Join(path, "HEAD"))
	return err == nil && st.ModTime().Before(t)
}

// removeRepo moves the repository at path out of the way (one rename, so a
// request never sees half of it) and deletes it. The caller holds repoMu.
func (s *Server) removeRepo(path string) error {
	trash := filepath.Join(s.cfg.RepoDir, trashPrefix+newID())
	if err := os.Rename(path, trash); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// sweepRepos runs sweepOnce now and then every cfg.SweepInterval until ctx
// is done.
func (s *Server) sweepRepos(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		s.sweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepOnce removes the repositories of apps that no longer exist, or that
// belong to an earlier app of the same name, and what an interrupted
// removal left. It is level-triggered: it looks at every repository, so a
// destroy the receiver did not see (it was down, or runs elsewhere) is
// cleaned up all the same. A repository whose push lock is held is left
// for the next round.
func (s *Server) sweepOnce(ctx context.Context) {
	entries, err := os.ReadDir(s.cfg.RepoDir)
	if err != nil {
		s.log.Error("list repositories", "err", err)
		return
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		name := e.Name()
		if strings.HasPrefix(name, trashPrefix) {
			if err := os.RemoveAll(filepath.Join(s.cfg.RepoDir, name)); err != nil {
				s.log.Error("remove a repository", "path", name, "err", err)
			}
			continue
		}
		app, ok := strings.CutSuffix(name, ".git")
		if !ok || !e.IsDir() || types.ValidateAppName(app) != nil {
			continue
		}
		s.sweepRepo(ctx, app)
	}
}

// sweepRepo removes the repository of app if the app is gone or is another
// app now.
func (s *Server) sweepRepo(ctx context.Context, name string) {
	path := s.repoPath(name)
	r, err := git.PlainOpen(path)
	if err != nil {
		s.log.Error("open a repository", "app", name, "err", err)
		return
	}
	before, err := recordedAppID(r)
	if err != nil {
		s.log.Error("read a repository's config", "app", name, "err", err)
		return
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	app, err := s.cfg.Apps.App(lctx, name)
	cancel()
	switch {
	case errors.Is(err, ErrNoApp):
	case err != nil:
		s.log.Warn("look up the app of a repository", "app", name, "err", err)
		return
	case before == "" || before == app.ID:
		return
	}
	s.repoMu.Lock()
	defer s.repoMu.Unlock()
	// A push may have replaced the repository since it was read.
	if r, err := git.PlainOpen(path); err != nil {
		return
	} else if now, err := recordedAppID(r); err != nil || now != before {
		return
	}
	unlock, err := tryLockRepo(path)
	if err != nil {
		return // a push is running: the next round
	}
	defer unlock()
	if err := s.removeRepo(path); err != nil {
		s.log.Error("remove the repository of a destroyed app", "app", name, "err", err)
		return
	}
	s.log.Info("removed the repository of a destroyed app", "app", name, "recorded_id", before)
}
