package up

import (
	"context"
	"errors"
	"log/slog"
	"time"

	cerrdefs "github.com/containerd/errdefs"
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
