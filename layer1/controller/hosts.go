package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/etcdmember"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// hostView is what etcd holds about the cluster's hosts, read at one
// revision.
type hostView struct {
	hosts   map[string]keyspace.Host // the hosts that heartbeat, by ID
	leases  map[string]clientv3.LeaseID
	flags   map[string]keyspace.HostFlags
	assigns []keyspace.Assignment
	// forms and jobs are read only for a drain, to preview it.
	forms []keyspace.Formation
	jobs  map[string]keyspace.JobState
}

// readHosts reads the hosts, their flags and the assignments in one
// transaction, and with full the formations and job states too.
func (s *Server) readHosts(ctx context.Context, full bool) (*hostView, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	ops := []clientv3.Op{
		clientv3.OpGet(s.space.Hosts(), clientv3.WithPrefix()),
		clientv3.OpGet(s.space.HostFlags(), clientv3.WithPrefix()),
		clientv3.OpGet(s.space.Assignments(), clientv3.WithPrefix()),
	}
	if full {
		ops = append(ops,
			clientv3.OpGet(s.space.Formations(), clientv3.WithPrefix()),
			clientv3.OpGet(s.space.Jobs(), clientv3.WithPrefix()))
	}
	resp, err := s.cfg.Etcd.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, etcdkv.Err("read the hosts", err)
	}
	v := &hostView{hosts: map[string]keyspace.Host{}, leases: map[string]clientv3.LeaseID{},
		flags: map[string]keyspace.HostFlags{}, jobs: map[string]keyspace.JobState{}}
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().GetKvs() }
	decode := func(kv *mvccpb.KeyValue, into any) bool {
		if err := json.Unmarshal(kv.Value, into); err != nil {
			s.log.Warn("undecodable value", "key", string(kv.Key), "err", err)
			return false
		}
		return true
	}
	for _, kv := range kvs(0) {
		var h keyspace.Host
		if decode(kv, &h) {
			h.ID = keyspace.Last(string(kv.Key))
			v.hosts[h.ID], v.leases[h.ID] = h, clientv3.LeaseID(kv.Lease)
		}
	}
	for _, kv := range kvs(1) {
		var f keyspace.HostFlags
		if decode(kv, &f) {
			v.flags[keyspace.Last(string(kv.Key))] = f
		}
	}
	for _, kv := range kvs(2) {
		var a keyspace.Assignment
		if decode(kv, &a) {
			host, job, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), s.space.Assignments()), "/")
			if ok {
				a.HostID, a.JobID = host, job
				v.assigns = append(v.assigns, a)
			}
		}
	}
	if full {
		for _, kv := range kvs(3) {
			var f keyspace.Formation
			if decode(kv, &f) {
				v.forms = append(v.forms, f)
			}
		}
		for _, kv := range kvs(4) {
			var st keyspace.JobState
			if decode(kv, &st) {
				st.JobID = keyspace.Last(string(kv.Key))
				v.jobs[st.JobID] = st
			}
		}
	}
	return v, nil
}

// known reports whether etcd knows the host id: it heartbeats, holds
// jobs, or has flags.
func (v *hostView) known(id string) bool {
	_, up := v.hosts[id]
	_, flagged := v.flags[id]
	return up || flagged || slices.ContainsFunc(v.assigns, func(a keyspace.Assignment) bool { return a.HostID == id })
}

// listed returns the IDs of the hosts GET /v1/hosts shows, sorted: those
// that heartbeat, hold jobs or are drained.
func (v *hostView) listed() []string {
	ids := map[string]bool{}
	for id := range v.hosts {
		ids[id] = true
	}
	for _, a := range v.assigns {
		ids[a.HostID] = true
	}
	for id, f := range v.flags {
		if f.Drain {
			ids[id] = true
		}
	}
	return slices.Sorted(maps.Keys(ids))
}

// jobsOn returns the assignments of the host id; with movable, only those
// a drain moves (not one-off jobs).
func (v *hostView) jobsOn(id string, movable bool) []keyspace.Assignment {
	var out []keyspace.Assignment
	for _, a := range v.assigns {
		if a.HostID == id && !(movable && a.Spec.OneOff) {
			out = append(out, a)
		}
	}
	return out
}

// state returns the state of the host id (types.Host*).
func (v *hostView) state(id string) string {
	h, up := v.hosts[id]
	switch {
	case !up:
		return types.HostDown
	case v.flags[id].Drain && len(v.jobsOn(id, false)) > 0:
		return types.HostDraining
	case v.flags[id].Drain:
		return types.HostDrained
	case !h.Healthy:
		return types.HostUnhealthy
	}
	return types.HostUp
}

// canRunJobs reports whether a host other than id heartbeats, is healthy
// and is not drained: whether the jobs of id have anywhere to go.
func (v *hostView) canRunJobs(other string) bool {
	for id, h := range v.hosts {
		if id != other && h.Healthy && !v.flags[id].Drain {
			return true
		}
	}
	return false
}

// stuck previews the drain of the host id with the scheduler's placement:
// the jobs of id that no other host can take now.
func (v *hostView) stuck(id string, now time.Time) []types.HostJob {
	flags := maps.Clone(v.flags)
	f := flags[id]
	f.Drain = true
	flags[id] = f
	gone := map[string]time.Time{}
	for _, a := range v.assigns {
		if _, up := v.hosts[a.HostID]; !up {
			gone[a.HostID] = now // as a new scheduler leader counts them
		}
	}
	plan := placement.Place(placement.Snapshot{
		Now: now, Hosts: slices.Collect(maps.Values(v.hosts)), GoneSince: gone,
		Formations: v.forms, Assignments: v.assigns, Jobs: v.jobs, Flags: flags,
	})
	out := []types.HostJob{}
	for _, u := range plan.Unplaced {
		if u.Reason == placement.ReasonDrain {
			out = append(out, types.HostJob{Job: u.Replaces, App: u.App, Type: u.Type, Index: u.Index})
		}
	}
	slices.SortFunc(out, func(a, b types.HostJob) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Index, b.Index))
	})
	return out
}

// getHosts answers GET /v1/hosts: the hosts that heartbeat, hold jobs or
// are drained, each with its state, address, jobs, etcd membership, last
// heartbeat (from its lease) and the CPU, memory and disk use its agent
// reports, asked of every host at once and bounded by usageTimeout.
func (s *Server) getHosts(w http.ResponseWriter, r *http.Request) {
	v, err := s.readHosts(r.Context(), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	members := s.etcdMembers(r.Context())
	ids := v.listed()
	out := make([]types.Host, len(ids))
	ctx, cancel := context.WithTimeout(r.Context(), usageTimeout)
	defer cancel()
	now := time.Now()
	var wg sync.WaitGroup
	for i, id := range ids {
		h, up := v.hosts[id]
		out[i] = types.Host{ID: id, Addr: h.Addr, State: v.state(id), Healthy: up && h.Healthy, Reason: h.Reason,
			Drain: v.flags[id].Drain, Version: h.Version, Jobs: len(v.jobsOn(id, false)),
			EtcdMember: etcdMember(members, id, h.Addr)}
		if !up {
			continue
		}
		out[i].StartedAt = h.StartedAt.UTC()
		// Each goroutine writes only its own field of its own host.
		if lease := v.leases[id]; lease != clientv3.NoLease {
			wg.Go(func() {
				ttl, err := s.cfg.Etcd.TimeToLive(ctx, lease)
				if err != nil || ttl.TTL <= 0 {
					s.log.Debug("no lease time of host", "host", id, "err", err)
					return
				}
				at := now.Add(-time.Duration(ttl.GrantedTTL-ttl.TTL) * time.Second).UTC().Truncate(time.Second)
				out[i].LastHeartbeat = &at
			})
		}
		if h.APIURL == "" {
			continue
		}
		wg.Go(func() {
			u, err := s.hosts.get(h.APIURL).Usage(ctx)
			if err != nil {
				s.log.Debug("no usage from host", "host", id, "err", err)
				return
			}
			hu := &types.HostUsage{At: u.At.UTC(), CPU: u.CPU, Cores: u.Cores, MemoryUsed: u.MemoryUsed, MemoryTotal: u.MemoryTotal,
				Disks: []types.Disk{}, DiskWarningPercent: s.cfg.diskWarningPercent()}
			for _, d := range u.Disks {
				hu.Disks = append(hu.Disks, types.Disk{Path: d.Path, Used: d.Used, Total: d.Total})
			}
			out[i].Usage = hu
		})
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

// etcdMembers returns the members of the cluster's etcd, or nil when etcd
// does not say (the hosts are then listed as no members).
func (s *Server) etcdMembers(ctx context.Context) []*etcdserverpb.Member {
	members, err := s.memberList(ctx)
	if err != nil {
		s.log.Warn("cannot list the etcd members", "err", err)
		return nil
	}
	return members
}

// etcdMember reports whether one of members runs on the host id: its name
// is id, or one of its client or peer URLs is on addr.
func etcdMember(members []*etcdserverpb.Member, id, addr string) bool {
	for _, m := range members {
		if m.Name == id {
			return true
		}
		if addr == "" {
			continue
		}
		for _, raw := range slices.Concat(m.ClientURLs, m.PeerURLs) {
			if u, err := url.Parse(raw); err == nil && u.Hostname() == addr {
				return true
			}
		}
	}
	return false
}

// hostOfPath reads the hosts (with their jobs when full, see readHosts)
// for a request about the host of its path. When that fails, or the host
// is unknown, it writes the error and returns false.
func (s *Server) hostOfPath(w http.ResponseWriter, r *http.Request, full bool) (string, *hostView, bool) {
	id := r.PathValue("host")
	v, err := s.readHosts(r.Context(), full)
	if err != nil {
		s.fail(w, r, err)
		return "", nil, false
	}
	if !v.known(id) {
		writeError(w, types.ErrHostNotFound.WithMessage("%s", describe(types.ErrHostNotFound, r)))
		return "", nil, false
	}
	return id, v, true
}

// drainHost answers POST /v1/hosts/{host}/drain: the host takes no new
// job and the scheduler moves its jobs to other hosts, each new job up
// before the old one stops. A host whose jobs have no other host to go to
// is refused (409) and left as it is; jobs that no other host can take
// now are listed as stuck and keep running where they are.
func (s *Server) drainHost(w http.ResponseWriter, r *http.Request) {
	id, v, ok := s.hostOfPath(w, r, true)
	if !ok {
		return
	}
	moving := v.jobsOn(id, true)
	if len(moving) > 0 && !v.canRunJobs(id) {
		writeError(w, types.ErrConflict.WithMessage(
			"no other host can run jobs (none is up, healthy and not drained): draining %q would leave its %d jobs nowhere to go; it stays as it is. Add a host, or undrain one, first",
			id, len(moving)))
		return
	}
	now := time.Now().UTC()
	stuck := v.stuck(id, now)
	f := v.flags[id]
	if !f.Drain {
		f.Drain, f.DrainedAt = true, now
		if err := etcdkv.Put(r.Context(), s.cfg.Etcd, s.space.HostFlag(id), etcdkv.MustJSON(f)); err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("host drained", "host", id, "jobs", len(moving), "stuck", len(stuck))
	}
	writeJSON(w, http.StatusOK, types.HostDrain{Host: id, Drain: true, Jobs: len(moving), Stuck: stuck})
}

// undrainHost answers POST /v1/hosts/{host}/undrain: the host takes new
// jobs again. Nothing is moved back.
func (s *Server) undrainHost(w http.ResponseWriter, r *http.Request) {
	id, v, ok := s.hostOfPath(w, r, false)
	if !ok {
		return
	}
	if f, ok := v.flags[id]; ok && f.Drain {
		f.Drain, f.DrainedAt = false, time.Time{}
		var err error
		if f == (keyspace.HostFlags{}) {
			err = etcdkv.Delete(r.Context(), s.cfg.Etcd, s.space.HostFlag(id))
		} else {
			err = etcdkv.Put(r.Context(), s.cfg.Etcd, s.space.HostFlag(id), etcdkv.MustJSON(f))
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("host undrained", "host", id)
	}
	writeJSON(w, http.StatusOK, types.HostDrain{Host: id, Drain: false, Stuck: []types.HostJob{}})
}

// removeHost answers DELETE /v1/hosts/{host}: it forgets a host that is
// down. When the host has an etcd member (named after its ID), that member
// is removed first (see removeEtcdMember), so a host known to etcd only as
// a member can be removed too. The scheduler deletes its assignments at
// once and places the jobs elsewhere; the answer waits for that up to
// Config.HostRemoveWait (200, and the host's flags go), else answers 202
// (the flags stay until a later removal finds the host empty). A host that
// heartbeats is refused (409).
func (s *Server) removeHost(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("host")
	v, err := s.readHosts(r.Context(), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	members, err := s.memberList(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	member := memberNamed(members, id)
	if !v.known(id) && member == nil {
		writeError(w, types.ErrHostNotFound.WithMessage("%s", describe(types.ErrHostNotFound, r)))
		return
	}
	if _, up := v.hosts[id]; up {
		writeError(w, types.ErrConflict.WithMessage(
			"host %q is up (its agent heartbeats): only a host that is down can be removed. To take it out, drain it (gantry host drain %s), stop its agent, then remove it",
			id, id))
		return
	}
	out := types.HostRemoval{Host: id, Jobs: len(v.jobsOn(id, false))}
	if member != nil {
		if out.EtcdMemberRemoved, err = s.removeEtcdMember(r.Context(), id, member, members); err != nil {
			s.fail(w, r, err)
			return
		}
		if out.EtcdMemberRemoved {
			out.EtcdMembers = len(members) - 1
			s.log.Info("etcd member removed", "host", id, "member", fmt.Sprintf("%x", member.ID), "members", out.EtcdMembers)
		}
	}
	if !v.known(id) {
		// Known only as an etcd member: nothing else to forget.
		out.Done = true
		writeJSON(w, http.StatusOK, out)
		return
	}
	key := s.space.HostFlag(id)
	ctx, cancel := context.WithTimeout(r.Context(), etcdkv.Timeout)
	put, err := s.cfg.Etcd.Put(ctx, key, string(etcdkv.MustJSON(keyspace.HostFlags{Remove: true, RemovedAt: time.Now().UTC()})))
	cancel()
	if err != nil {
		s.fail(w, r, etcdkv.Err("put "+key, err))
		return
	}
	s.log.Info("host removed", "host", id, "jobs", out.Jobs)
	done, err := s.waitHostEmpty(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !done {
		writeJSON(w, http.StatusAccepted, out)
		return
	}
	// Forget the flags, unless another request rewrote them meanwhile.
	ctx, cancel = context.WithTimeout(r.Context(), etcdkv.Timeout)
	defer cancel()
	if _, err := s.cfg.Etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", put.Header.Revision)).
		Then(clientv3.OpDelete(key)).Commit(); err != nil {
		s.fail(w, r, etcdkv.Err("delete "+key, err))
		return
	}
	out.Done = true
	writeJSON(w, http.StatusOK, out)
}

// memberProbeTimeout bounds removeEtcdMember's check that the member of a
// host that is down does not answer any more.
const memberProbeTimeout = 3 * time.Second

// memberList returns the members of the cluster's etcd.
func (s *Server) memberList(ctx context.Context) ([]*etcdserverpb.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	resp, err := s.cfg.Etcd.MemberList(ctx)
	if err != nil {
		return nil, etcdkv.Err("list the etcd members", err)
	}
	return resp.Members, nil
}

// memberNamed returns the member of members named name, or nil.
func memberNamed(members []*etcdserverpb.Member, name string) *etcdserverpb.Member {
	if i := slices.IndexFunc(members, func(m *etcdserverpb.Member) bool { return m.Name == name }); i >= 0 {
		return members[i]
	}
	return nil
}

// removeEtcdMember removes m, the etcd member of the host id (which is
// down), of members, and reports whether it was still there. It refuses
// (409) to remove the last voting member, and a member that still answers
// at one of its client URLs (it runs: removing it would take a live
// member out of the quorum). When etcd cannot do it (no quorum, or the
// members that would remain are not all connected) it answers 503.
func (s *Server) removeEtcdMember(ctx context.Context, id string, m *etcdserverpb.Member, members []*etcdserverpb.Member) (bool, error) {
	if !m.IsLearner && !slices.ContainsFunc(members, func(o *etcdserverpb.Member) bool { return o.ID != m.ID && !o.IsLearner }) {
		return false, types.ErrConflict.WithMessage(
			"host %q runs the last voting member of the cluster's etcd: removing it would leave the cluster without its state; it stays as it is", id)
	}
	for _, u := range m.ClientURLs {
		pctx, cancel := context.WithTimeout(ctx, memberProbeTimeout)
		_, err := s.cfg.Etcd.Status(pctx, u)
		cancel()
		if err == nil {
			return false, types.ErrConflict.WithMessage(
				"the etcd member of host %q still answers at %s: stop it (or the host) before removing the host; it stays as it is", id, u)
		}
	}
	removed, err := etcdmember.Remove(ctx, s.cfg.Etcd, id)
	if err != nil {
		s.log.Warn("cannot remove an etcd member", "host", id, "err", err)
		return false, types.ErrUnavailable.WithMessage(
			"etcd cannot remove the member of host %q now (%v): the members that remain must be up and connected; the host stays as it is, try again when they are", id, err)
	}
	return removed, nil
}

// hostPoll is how often removeHost looks whether the scheduler has taken
// a removed host's jobs off it.
const hostPoll = 200 * time.Millisecond

// waitHostEmpty waits up to Config.HostRemoveWait until the host id holds
// no job but one-off jobs (which stay until their owner is done with
// them), and reports whether it came to that.
func (s *Server) waitHostEmpty(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.hostRemoveWait())
	defer cancel()
	tick := time.NewTicker(hostPoll)
	defer tick.Stop()
	for {
		gctx, gcancel := context.WithTimeout(ctx, etcdkv.Timeout)
		resp, err := s.cfg.Etcd.Get(gctx, s.space.HostAssignments(id), clientv3.WithPrefix())
		gcancel()
		if ctx.Err() != nil {
			return false, nil
		}
		if err != nil {
			return false, etcdkv.Err("list the assignments of host "+id, err)
		}
		empty := true
		for _, kv := range resp.Kvs {
			var a keyspace.Assignment
			if json.Unmarshal(kv.Value, &a) != nil || !a.Spec.OneOff {
				empty = false
			}
		}
		if empty {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-tick.C:
		}
	}
}
