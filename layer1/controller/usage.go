package controller

import (
	"context"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// usageTimeout bounds the wait for the host agents' figures: a slow or
// lost host leaves its jobs without usage instead of delaying the list.
const usageTimeout = 2 * time.Second

// addUsage fills the Usage of the running jobs from their host agents'
// GET /v1/jobs, asking every host at once.
func (s *Server) addUsage(ctx context.Context, jobs []types.Job) {
	byHost := map[string][]int{}
	for i, j := range jobs {
		if j.Host != "" && (j.State == types.JobUp || j.State == types.JobStarting) {
			byHost[j.Host] = append(byHost[j.Host], i)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for hostID, idx := range byHost {
		wg.Go(func() {
			host, err := s.readHost(ctx, hostID)
			if err != nil || host == nil || host.APIURL == "" {
				return
			}
			list, err := s.hosts.get(host.APIURL).ListJobs(ctx)
			if err != nil {
				s.log.Debug("no usage from host", "host", hostID, "err", err)
				return
			}
			stats := make(map[string]*types.JobUsage, len(list))
			for _, hj := range list {
				if st := hj.Stats; st != nil {
					stats[hj.JobID] = &types.JobUsage{At: st.At.UTC(), CPU: st.CPU, MemoryRSS: st.MemoryRSS,
						MemoryCache: st.MemoryCache, MemoryLimit: st.MemoryLimit}
				}
			}
			// Each goroutine writes only its own host's jobs.
			for _, i := range idx {
				jobs[i].Usage = stats[jobs[i].ID]
			}
		})
	}
	wg.Wait()
}
