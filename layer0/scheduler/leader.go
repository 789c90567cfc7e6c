package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
)

// wakeSlack is added to a plan's NextWake so that the timer fires after the
// back-off or grace has surely ended.
const wakeSlack = 10 * time.Millisecond

// leader is the state of one term of leadership.
type leader struct {
	*scheduler
	g guard

	hosts   family[keyspace.Host]
	forms   family[keyspace.Formation]
	assigns family[keyspace.Assignment]
	jobs    family[keyspace.JobState]
	flags   family[hostFlags]

	present   map[string]bool      // hosts in the latest host snapshot
	goneSince map[string]time.Time // absent hosts holding assignments: last seen
	stale     bool                 // assignments must be re-read before planning
	unplaced  []placement.Unplaced // last logged
}

// lead converges the cluster until ctx is done or a write is refused.
func (s *scheduler) lead(ctx context.Context, g guard) error {
	l := &leader{
		scheduler: s,
		g:         g,
		hosts:     hostFamily(s.space),
		forms:     formationFamily(s.space),
		assigns:   assignmentFamily(s.space),
		jobs:      jobFamily(s.space),
		flags:     hostFlagsFamily(s.space),
		present:   map[string]bool{},
		goneSince: map[string]time.Time{},
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefixes := []string{s.space.Hosts(), s.space.Formations(), s.space.Assignments(), s.space.Jobs(), s.space.HostFlags()}
	chans := make([]<-chan etcdwatch.Snapshot, len(prefixes))
	for i, p := range prefixes {
		ch, err := etcdwatch.Watch(wctx, etcdwatch.Config{
			Client: s.cfg.Etcd, Prefix: p, RequestTimeout: s.cfg.RequestTimeout, Logger: s.log,
		})
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		chans[i] = ch
	}

	// The term ends as soon as the election key goes (a revoked or expired
	// lease), not only when the session's keep-alive notices.
	keyc := s.cfg.Etcd.Watch(clientv3.WithRequireLeader(wctx), g.key, clientv3.WithRev(g.rev))

	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case snap, ok := <-chans[0]:
			if !ok {
				return ctx.Err()
			}
			l.receive(0, snap)
		case snap, ok := <-chans[1]:
			if !ok {
				return ctx.Err()
			}
			l.receive(1, snap)
		case snap, ok := <-chans[2]:
			if !ok {
				return ctx.Err()
			}
			l.receive(2, snap)
		case snap, ok := <-chans[3]:
			if !ok {
				return ctx.Err()
			}
			l.receive(3, snap)
		case snap, ok := <-chans[4]:
			if !ok {
				return ctx.Err()
			}
			l.receive(4, snap)
		case wr, ok := <-keyc:
			if err := keyGone(wr, ok, g); err != nil {
				return err
			}
			continue
		case <-tick.C:
		case <-wake.C:
		}
		// Take whatever else is waiting, so a burst of changes makes one plan.
		for i, ch := range chans {
			select {
			case snap, ok := <-ch:
				if ok {
					l.receive(i, snap)
				}
			default:
			}
		}
		if !l.hosts.loaded || !l.forms.loaded || !l.assigns.loaded || !l.jobs.loaded || !l.flags.loaded {
			continue
		}
		next, err := l.converge(ctx)
		if errors.Is(err, errNotLeader) || ctx.Err() != nil {
			return err
		}
		if err != nil {
			s.log.Warn("converge", "err", err)
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next) + wakeSlack)
		}
	}
}

// receive takes a snapshot of the family watched on channel i.
func (l *leader) receive(i int, snap etcdwatch.Snapshot) {
	switch i {
	case 0:
		l.hosts.update(l.log, snap.Revision, snap.KVs)
		now := time.Now()
		present := make(map[string]bool, len(l.hosts.list))
		for _, h := range l.hosts.list {
			present[h.ID] = true
			delete(l.goneSince, h.ID)
		}
		for id := range l.present {
			if !present[id] {
				l.goneSince[id] = now
				l.log.Info("host gone", "host", id)
			}
		}
		l.present = present
	case 1:
		l.forms.update(l.log, snap.Revision, snap.KVs)
	case 2:
		l.assigns.update(l.log, snap.Revision, snap.KVs)
	case 3:
		l.jobs.update(l.log, snap.Revision, snap.KVs)
	case 4:
		l.flags.update(l.log, snap.Revision, snap.KVs)
	}
}

// converge plans once and applies the plan. It returns the plan's NextWake.
func (l *leader) converge(ctx context.Context) (time.Time, error) {
	if l.stale {
		if err := l.relist(ctx); err != nil {
			return time.Time{}, err
		}
	}
	plan := placement.Place(l.snapshot(time.Now().UTC()))
	l.logUnplaced(plan.Unplaced)
	if plan.Empty() {
		return plan.NextWake, nil
	}
	for _, st := range plan.Stop {
		a := st.Assignment
		l.log.Info("stop job", "job", a.JobID, "host", a.HostID, "app", a.Spec.App, "release", a.Spec.Release,
			"type", a.Spec.Type, "index", a.Index, "reason", string(st.Reason))
	}
	for _, st := range plan.Start {
		a := st.Assignment
		l.log.Info("start job", "job", a.JobID, "host", a.HostID, "app", a.Spec.App, "release", a.Spec.Release,
			"type", a.Spec.Type, "index", a.Index, "restarts", a.Restarts, "reason", string(st.Reason), "replaces", st.Replaces)
	}
	for _, a := range plan.Update {
		l.log.Info("crashed job waits for its back-off", "job", a.JobID, "host", a.HostID, "app", a.Spec.App,
			"release", a.Spec.Release, "type", a.Spec.Type, "index", a.Index, "restarts", a.Restarts, "restart_at", a.RestartAt)
	}
	// Whatever happens, the next plan must see what this one wrote.
	l.stale = true
	if err := apply(ctx, l.cfg.Etcd, l.space, l.g, plan, l.cfg.RequestTimeout); err != nil {
		return time.Time{}, fmt.Errorf("apply plan: %w", err)
	}
	attrs := []any{"starts", len(plan.Start), "stops", len(plan.Stop), "updates", len(plan.Update), "unplaced", len(plan.Unplaced)}
	if !plan.NextWake.IsZero() {
		attrs = append(attrs, "next_wake", plan.NextWake)
	}
	l.log.Info("plan applied", attrs...)
	if err := l.relist(ctx); err != nil {
		return time.Time{}, err
	}
	return plan.NextWake, nil
}

// relist re-reads the assignments, so the next plan starts from what is in
// etcd now, whatever the watch has delivered so far.
func (l *leader) relist(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	resp, err := l.cfg.Etcd.Get(gctx, l.space.Assignments(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("re-read assignments: %w", err)
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv.Value
	}
	l.assigns.update(l.log, resp.Header.Revision, kvs)
	l.stale = false
	return nil
}

// snapshot builds the placement snapshot of now. A host that holds
// assignments but was never seen in this term counts as seen now.
func (l *leader) snapshot(now time.Time) placement.Snapshot {
	referenced := make(map[string]bool)
	for _, a := range l.assigns.list {
		if !l.present[a.HostID] {
			referenced[a.HostID] = true
			if _, ok := l.goneSince[a.HostID]; !ok {
				l.goneSince[a.HostID] = now
			}
		}
	}
	for id := range l.goneSince {
		if !referenced[id] {
			delete(l.goneSince, id)
		}
	}
	jobs := make(map[string]keyspace.JobState, len(l.jobs.list))
	for _, j := range l.jobs.list {
		jobs[j.JobID] = j
	}
	flags := make(map[string]keyspace.HostFlags, len(l.flags.list))
	for _, f := range l.flags.list {
		flags[f.ID] = f.HostFlags
	}
	return placement.Snapshot{
		Now:         now,
		Seed:        rand.Uint64(),
		Hosts:       l.hosts.list,
		GoneSince:   l.goneSince,
		HostGrace:   l.cfg.HostGrace,
		Backoff:     l.cfg.Backoff,
		Formations:  l.forms.list,
		Assignments: l.assigns.list,
		Jobs:        jobs,
		Flags:       flags,
	}
}

// logUnplaced logs the jobs that fit nowhere when they change.
func (l *leader) logUnplaced(u []placement.Unplaced) {
	if reflect.DeepEqual(u, l.unplaced) {
		return
	}
	l.unplaced = u
	if len(u) == 0 {
		l.log.Info("every job is placed")
		return
	}
	for _, j := range u {
		l.log.Warn("no host can take job", "app", j.App, "release", j.Release, "type", j.Type,
			"index", j.Index, "reason", string(j.Reason), "replaces", j.Replaces)
	}
}

// keyGone reports an error when a watch response on the election key says
// the term is over or can no longer be followed.
func keyGone(wr clientv3.WatchResponse, ok bool, g guard) error {
	if !ok {
		return fmt.Errorf("watch election key %s: channel closed", g.key)
	}
	if err := wr.Err(); err != nil {
		return fmt.Errorf("watch election key %s: %w", g.key, err)
	}
	for _, ev := range wr.Events {
		if ev.Type == clientv3.EventTypeDelete {
			return fmt.Errorf("election key %s deleted: %w", g.key, errLeadershipLost)
		}
	}
	return nil
}
