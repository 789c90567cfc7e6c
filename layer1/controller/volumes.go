package controller

import (
	"context"
	"errors"
	"fmt"
)

// deleteAppVolumes asks every host agent that reports to remove the
// volumes of app (its build cache), when the app is deleted. A host that
// is down keeps them until the first garbage collection after it returns
// (see collectHosts); the error says which hosts failed.
func (s *Server) deleteAppVolumes(ctx context.Context, app string) error {
	hosts, err := s.listHosts(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hosts {
		if err := s.hosts.get(h.APIURL).RemoveAppVolumes(ctx, app); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.ID, err))
		}
	}
	return errors.Join(errs...)
}
