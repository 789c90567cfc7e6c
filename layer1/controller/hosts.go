package controller

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// getHosts answers GET /v1/hosts: the registered hosts with the CPU,
// memory and disk use their agents report, asked of every host at once
// and bounded by usageTimeout.
func (s *Server) getHosts(w http.ResponseWriter, r *http.Request) {
	hosts, err := s.listHosts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	slices.SortFunc(hosts, func(a, b keyspace.Host) int { return strings.Compare(a.ID, b.ID) })
	jobs, err := s.jobsPerHost(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]types.Host, len(hosts))
	ctx, cancel := context.WithTimeout(r.Context(), usageTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, h := range hosts {
		out[i] = types.Host{ID: h.ID, Addr: h.Addr, Healthy: h.Healthy, Reason: h.Reason, Version: h.Version, StartedAt: h.StartedAt.UTC(),
			Jobs: jobs[h.ID]}
		wg.Go(func() {
			u, err := s.hosts.get(h.APIURL).Usage(ctx)
			if err != nil {
				s.log.Debug("no usage from host", "host", h.ID, "err", err)
				return
			}
			hu := &types.HostUsage{At: u.At.UTC(), CPU: u.CPU, Cores: u.Cores, MemoryUsed: u.MemoryUsed, MemoryTotal: u.MemoryTotal,
				Disks: []types.Disk{}, DiskWarningPercent: s.cfg.diskWarningPercent()}
			for _, d := range u.Disks {
				hu.Disks = append(hu.Disks, types.Disk{Path: d.Path, Used: d.Used, Total: d.Total})
			}
			out[i].Usage = hu // each goroutine writes only its own host
		})
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

// jobsPerHost counts the jobs the scheduler placed on each host (its
// assignments), by host ID.
func (s *Server) jobsPerHost(ctx context.Context) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	prefix := s.space.Assignments()
	resp, err := s.cfg.Etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, etcdkv.Err("count the jobs of the hosts", err)
	}
	n := map[string]int{}
	for _, kv := range resp.Kvs {
		if host, _, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/"); ok {
			n[host]++
		}
	}
	return n, nil
}
