package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

const (
	// gcTimeout bounds one collection (POST /v1/gc).
	gcTimeout = 2 * time.Minute
	// clockSkew is subtracted from GCRequest.ListedAt: a volume created
	// less than that before the controller listed the apps is kept, in
	// case the host's clock is ahead.
	clockSkew = time.Minute
	// maxGCBody bounds the body of POST /v1/gc.
	maxGCBody = 4 << 20
)

// collect answers POST /v1/gc: it removes the exited containers of the
// cluster on this host that no job owns, the cluster's volumes of apps not
// in the request, the stale tags of the platform's image repositories, and
// the cached artifacts (slugs, build inputs) that no current job uses.
// Each is level-triggered: a host that was down when an app was deleted
// removes its volumes at its first collection after it returns.
func (a *agent) collect(w http.ResponseWriter, r *http.Request) {
	var req client.GCRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxGCBody))
	if err := dec.Decode(&req); err != nil {
		writeError(w, client.NewError(client.ErrBadRequest, "body: %v", err))
		return
	}
	if req.ListedAt.IsZero() {
		writeError(w, client.NewError(client.ErrBadRequest, "listed_at is required"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), gcTimeout)
	defer cancel()
	var res client.GCResult
	var errs []error
	var err error
	if res.Containers, err = a.removeExitedContainers(ctx); err != nil {
		errs = append(errs, err)
	}
	if res.Volumes, err = a.removeDeletedAppsVolumes(ctx, req.Apps, req.ListedAt.Add(-clockSkew)); err != nil {
		errs = append(errs, err)
	}
	if res.Images, err = a.removeStaleImages(ctx, req.ImageRepos, req.KeepImages); err != nil {
		errs = append(errs, err)
	}
	res.Artifacts = a.artifacts.evict(a.artifactsInUse(), 0)
	if err := errors.Join(errs...); err != nil {
		a.log.Warn("garbage collection", "err", err)
		writeError(w, client.NewError(client.ErrUnavailable, "docker: the collection failed part-way: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// removeExitedContainers removes the exited (or never started) containers
// labelled with this cluster and host whose job the agent does not run.
func (a *agent) removeExitedContainers(ctx context.Context) ([]string, error) {
	f := a.labelFilter()
	f.Add("status", "exited")
	f.Add("status", "created")
	f.Add("status", "dead")
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	list, err := a.docker.ContainerList(tctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list exited containers: %w", err)
	}
	removed := []string{}
	var errs []error
	for _, c := range list {
		if _, ok := a.job(c.Labels[keyspace.LabelJob]); ok {
			continue // the job's own loop restarts or removes it
		}
		// Not forced: a container that started meanwhile is kept.
		err := a.docker.ContainerRemove(tctx, c.ID, container.RemoveOptions{})
		switch {
		case err == nil:
			removed = append(removed, c.ID)
			a.log.Info("exited container removed", "container", shortID(c.ID), "job", c.Labels[keyspace.LabelJob])
		case !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err):
			errs = append(errs, fmt.Errorf("remove container %s: %w", shortID(c.ID), err))
		}
	}
	return removed, errors.Join(errs...)
}

// removeDeletedAppsVolumes removes the cluster's volumes whose app is not
// in apps and that were created before before. Docker refuses to remove a
// volume a container uses, and such a volume is kept.
func (a *agent) removeDeletedAppsVolumes(ctx context.Context, apps []string, before time.Time) ([]string, error) {
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	list, err := a.docker.VolumeList(tctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+a.cfg.Cluster))})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	removed := []string{}
	var errs []error
	for _, v := range list.Volumes {
		app := v.Labels[keyspace.LabelApp]
		created, err := time.Parse(time.RFC3339, v.CreatedAt)
		if app == "" || slices.Contains(apps, app) || err != nil || !created.Before(before) {
			continue
		}
		switch err := a.docker.VolumeRemove(tctx, v.Name, false); {
		case err == nil:
			removed = append(removed, v.Name)
			a.log.Info("volume of a deleted app removed", "app", app, "volume", v.Name)
		case !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err):
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return removed, errors.Join(errs...)
}

// removeStaleImages removes the tags of the repositories repos that are
// not in keep. Docker refuses to remove an image a container uses, and
// such an image is kept; an image with other tags only loses this one.
func (a *agent) removeStaleImages(ctx context.Context, repos, keep []string) ([]string, error) {
	removed := []string{}
	if len(repos) == 0 {
		return removed, nil
	}
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	f := filters.NewArgs()
	for _, repo := range repos {
		f.Add("reference", repo)
	}
	list, err := a.docker.ImageList(tctx, image.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var errs []error
	for _, img := range list {
		for _, ref := range img.RepoTags {
			repo := ref
			if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
				repo = ref[:i]
			}
			if !slices.Contains(repos, repo) || slices.Contains(keep, ref) {
				continue
			}
			_, err := a.docker.ImageRemove(tctx, ref, image.RemoveOptions{PruneChildren: true})
			switch {
			case err == nil:
				removed = append(removed, ref)
				a.log.Info("stale platform image removed", "image", ref)
			case !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err):
				errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			}
		}
	}
	return removed, errors.Join(errs...)
}
