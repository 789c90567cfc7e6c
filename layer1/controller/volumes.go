package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// deleteAppVolumes asks every host agent that reports to remove the
// volumes of app (its build cache), when the app is deleted. A host that
// is down keeps them; the error says which hosts failed.
func (s *Server) deleteAppVolumes(ctx context.Context, app string) error {
	ectx, cancel := context.WithTimeout(ctx, etcdTimeout)
	resp, err := s.cfg.Etcd.Get(ectx, s.space.Hosts(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return etcdErr("list hosts", err)
	}
	var errs []error
	for _, kv := range resp.Kvs {
		var h keyspace.Host
		if err := json.Unmarshal(kv.Value, &h); err != nil || h.APIURL == "" {
			continue
		}
		if err := s.hosts.get(h.APIURL).RemoveAppVolumes(ctx, app); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.ID, err))
		}
	}
	return errors.Join(errs...)
}
