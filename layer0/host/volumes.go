package host

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// LabelVolume labels a job volume with its name within the app.
const LabelVolume = "gantry.volume"

// volumeNameRE is the syntax of keyspace.Volume.Name.
var volumeNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,29}$`)

// appNameRE is the syntax of an app name, as the controller has it.
var appNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,29}$`)

// maxVolumes bounds the volumes of one job.
const maxVolumes = 4

// dockerVolume is the Docker name of an app's volume: "_" separates the
// parts, since neither an app nor a volume name has one.
func dockerVolume(cluster, app, name string) string {
	return "gantry_" + cluster + "_" + app + "_" + name
}

// validateVolumes checks the volumes of s against targets, the container
// paths already mounted.
func validateVolumes(s keyspace.JobSpec, targets map[string]bool) []error {
	var errs []error
	if len(s.Volumes) > maxVolumes {
		errs = append(errs, fmt.Errorf("more than %d volumes", maxVolumes))
	}
	if len(s.Volumes) > 0 && !appNameRE.MatchString(s.App) {
		errs = append(errs, fmt.Errorf("volumes of a job of app %q, which is not an app name", s.App))
	}
	names := map[string]bool{}
	for _, v := range s.Volumes {
		if !volumeNameRE.MatchString(v.Name) {
			errs = append(errs, fmt.Errorf("volume name %q: want %s", v.Name, volumeNameRE))
		} else if names[v.Name] {
			errs = append(errs, fmt.Errorf("volume %s is mounted twice", v.Name))
		}
		names[v.Name] = true
		if err := validateContainerPath(v.Path); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.Name, err))
		} else if targets[v.Path] {
			errs = append(errs, fmt.Errorf("volume %s: the path %s is mounted twice", v.Name, v.Path))
		}
		targets[v.Path] = true
	}
	return errs
}

// volumeMounts creates the volumes of the job's spec that do not exist yet,
// labelled with the cluster and the app, and returns their mounts. A new
// volume takes the owner of the image's directory at its path, so a job
// that runs as an unprivileged user can write to it when the image has that
// directory (see deploy/stack's BuildCacheDir).
func (j *job) volumeMounts(ctx context.Context) ([]mount.Mount, error) {
	spec := j.spec()
	var out []mount.Mount
	for _, v := range spec.Volumes {
		name := dockerVolume(j.a.cfg.Cluster, spec.App, v.Name)
		tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		_, err := j.a.docker.VolumeCreate(tctx, volume.CreateOptions{Name: name, Labels: map[string]string{
			keyspace.LabelCluster: j.a.cfg.Cluster, keyspace.LabelApp: spec.App, LabelVolume: v.Name,
		}})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create volume %s: %w", name, err)
		}
		out = append(out, mount.Mount{Type: mount.TypeVolume, Source: name, Target: v.Path})
	}
	return out, nil
}

// removeAppVolumes removes the volumes of app on this host
// (DELETE /v1/apps/{app}/volumes), as when the app is deleted. A volume in
// use by a running job is left, with a 409 naming it.
func (a *agent) removeAppVolumes(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if !appNameRE.MatchString(app) {
		writeError(w, client.NewError(client.ErrBadRequest, "app %q: want an app name", app))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dockerTimeout)
	defer cancel()
	list, err := a.docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+a.cfg.Cluster),
		filters.Arg("label", keyspace.LabelApp+"="+app),
	)})
	if err != nil {
		a.log.Warn("list volumes", "app", app, "err", err)
		writeError(w, client.NewError(client.ErrUnavailable, "docker: cannot list the volumes"))
		return
	}
	removed := []string{}
	var inUse []string
	var errs []error
	for _, v := range list.Volumes {
		switch err := a.docker.VolumeRemove(ctx, v.Name, false); {
		case err == nil:
			removed = append(removed, v.Name)
			a.log.Info("volume removed", "app", app, "volume", v.Name)
		case cerrdefs.IsConflict(err):
			inUse = append(inUse, v.Name)
		case !cerrdefs.IsNotFound(err):
			errs = append(errs, fmt.Errorf("%s: %w", v.Name, err))
		}
	}
	switch {
	case len(errs) > 0:
		a.log.Warn("remove volumes", "app", app, "err", errors.Join(errs...))
		writeError(w, client.NewError(client.ErrUnavailable, "docker: cannot remove the volumes of %s", app))
	case len(inUse) > 0:
		writeError(w, client.NewError(client.ErrConflict, "volumes in use by a running job: %v", inUse))
	default:
		writeJSON(w, http.StatusOK, map[string][]string{"removed": removed})
	}
}
