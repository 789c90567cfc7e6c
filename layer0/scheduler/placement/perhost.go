package placement

import (
	"maps"
	"slices"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// reconcilePerHost stops the jobs that the per-host formation f no longer
// wants and returns its jobs to place, each pinned to its host: a job on
// every eligible host that has none, the replacement of a crashed job on
// its own host and, during a rolling restart, the next restart job, on
// the host of the stale job it takes over from.
//
// Jobs of lost hosts stop and are not replaced elsewhere; jobs of drained
// hosts stop at once (the other hosts have theirs already), as do jobs
// on hosts whose tags no longer match. A host keeps one fresh job: the
// one up, else the oldest.
func (p *planner) reconcilePerHost(f *formation) []request {
	restarting := p.restarting(f)
	byHost := make(map[string][]*keyspace.Assignment)
	for _, a := range f.assigns {
		h, registered := p.hostIdx[a.HostID]
		switch {
		case !registered && p.hostLost(a.HostID):
			p.stop(a, ReasonHostLost)
		case p.drained(a.HostID):
			p.stop(a, ReasonDrain)
		case registered && !matches(p.hosts[h].Tags, f.spec.Constraints):
			p.stop(a, ReasonSurplus)
		default:
			byHost[a.HostID] = append(byHost[a.HostID], a)
		}
	}

	var reqs []request
	busy := false                       // a fresh job is not up: the restart waits
	var outgoing []*keyspace.Assignment // hosts with only a stale job left, by host ID
	used := make(map[int]bool, len(f.assigns))
	has := make(map[string]bool, len(byHost)) // hosts that keep a job
	for _, id := range slices.Sorted(maps.Keys(byHost)) {
		fresh, stale := byHost[id], []*keyspace.Assignment(nil)
		if restarting {
			fresh, stale = p.splitStale(f, fresh)
		}
		fresh = p.trim(fresh, len(fresh)-1, ReasonSurplus)
		switch {
		case len(fresh) == 1 && p.serving(fresh[0]):
			for _, a := range stale {
				p.stop(a, ReasonRestart)
			}
			stale = nil
		case len(fresh) == 1:
			busy = true
			stale = p.trim(stale, len(stale)-1, ReasonRestart)
		case len(stale) > 0:
			stale = p.trim(stale, len(stale)-1, ReasonRestart)
			outgoing = append(outgoing, stale[0])
		}
		for _, a := range slices.Concat(fresh, stale) {
			used[a.Index] = true
			has[id] = true
		}
		if len(fresh) == 1 {
			if r, ok := p.replacement(f, fresh[0]); ok {
				r.pin = id
				reqs = append(reqs, r)
			}
		}
	}

	next := 1
	for _, h := range p.eligible(f) {
		id := p.hosts[h].ID
		if has[id] {
			continue
		}
		for used[next] {
			next++
		}
		used[next] = true
		reqs = append(reqs, request{form: f, index: next, reason: ReasonNew, pin: id})
	}

	// One host at a time: the next restart job starts once every fresh
	// job is up, on the first host (by ID) that can take it.
	if restarting && !busy {
		for _, out := range outgoing {
			if h, ok := p.hostIdx[out.HostID]; ok && slices.Contains(p.eligible(f), h) {
				reqs = append(reqs, request{form: f, index: out.Index, reason: ReasonRestart, outgoing: out, pin: out.HostID})
				break
			}
		}
	}
	return reqs
}
