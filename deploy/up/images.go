package up

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	docker "github.com/docker/docker/client"
)

// checkImages warns when an image the platform runs is missing from the
// local engine: pushes need both (gantryd stack build makes them).
func checkImages(ctx context.Context, dk *docker.Client, log *slog.Logger, refs ...string) []string {
	var missing []string
	for _, ref := range refs {
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := dk.ImageInspect(ictx, ref)
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			missing = append(missing, ref)
		case err != nil && !errors.Is(err, context.Canceled):
			log.Warn("cannot check an image", "image", ref, "err", err)
		}
	}
	return missing
}

// stalePlatformAge is how old a platform image that no container uses
// must be before gantryd up removes it: a younger one may be the image of
// another data dir's `gantryd up` (hosts can share one engine) that has
// not created its containers yet.
const stalePlatformAge = time.Hour

// removeStaleImages removes the tags of repo other than keep that are
// older than minAge and that no container uses (the engine refuses those,
// and they are kept: the previous platform image stays until the next
// start after its last container went), so the images of earlier
// gantryds do not fill the disk one upgrade at a time. It returns the
// tags removed.
func removeStaleImages(ctx context.Context, dk *docker.Client, repo, keep string, minAge time.Duration, log *slog.Logger) ([]string, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	list, err := dk.ImageList(lctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("list the %s images: %w", repo, err)
	}
	var removed []string
	var errs []error
	for _, img := range list {
		if time.Since(time.Unix(img.Created, 0)) < minAge {
			continue
		}
		for _, ref := range img.RepoTags {
			if ref == keep || !strings.HasPrefix(ref, repo+":") {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			_, err := dk.ImageRemove(rctx, ref, image.RemoveOptions{PruneChildren: true})
			cancel()
			switch {
			case err == nil:
				removed = append(removed, ref)
				log.Info("removed an earlier platform image", "image", ref)
			case !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err):
				errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			}
		}
	}
	return removed, errors.Join(errs...)
}
