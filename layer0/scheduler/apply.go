package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
)

// errNotLeader says that a write was refused because the writer's election
// key is gone or belongs to another term.
var errNotLeader = errors.New("not the leader")

// maxTxnOps is the most operations put in one transaction (etcd refuses
// more than 128 by default).
const maxTxnOps = 64

// guard identifies a leader's term: its election key and the revision that
// created it. A transaction guarded by it succeeds only while the key still
// exists with that creation revision.
type guard struct {
	key string
	rev int64
}

func (g guard) cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(g.key), "=", g.rev)
}

// apply writes plan to etcd in transactions of at most maxTxnOps, each
// guarded by g. A replacement's new assignment and the deletion of the old
// one go in the same transaction. Updated assignments are put again. It returns errNotLeader when the guard
// fails; transactions already committed stay.
func apply(ctx context.Context, etcd *clientv3.Client, space keyspace.Space, g guard, plan placement.Plan, timeout time.Duration) error {
	replaced := make(map[string]bool, len(plan.Start))
	for _, st := range plan.Start {
		if st.Replaces != "" {
			replaced[st.Replaces] = true
		}
	}
	stops := make(map[string]keyspace.Assignment, len(plan.Stop))
	var groups [][]clientv3.Op
	for _, st := range plan.Stop {
		a := st.Assignment
		if replaced[a.JobID] {
			stops[a.JobID] = a
			continue
		}
		groups = append(groups, []clientv3.Op{clientv3.OpDelete(space.Assignment(a.HostID, a.JobID))})
	}
	for _, st := range plan.Start {
		a := st.Assignment
		val, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode assignment %s: %w", a.JobID, err)
		}
		ops := []clientv3.Op{clientv3.OpPut(space.Assignment(a.HostID, a.JobID), string(val))}
		if old, ok := stops[st.Replaces]; ok {
			ops = append(ops, clientv3.OpDelete(space.Assignment(old.HostID, old.JobID)))
		}
		groups = append(groups, ops)
	}
	for _, a := range plan.Update {
		val, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode assignment %s: %w", a.JobID, err)
		}
		groups = append(groups, []clientv3.Op{clientv3.OpPut(space.Assignment(a.HostID, a.JobID), string(val))})
	}

	var batch []clientv3.Op
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		tctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := etcd.Txn(tctx).If(g.cmp()).Then(batch...).Commit()
		cancel()
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("write assignments: %w", err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("write assignments: election key %s of revision %d is gone: %w", g.key, g.rev, errNotLeader)
		}
		return nil
	}
	for _, ops := range groups {
		if len(batch)+len(ops) > maxTxnOps {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, ops...)
	}
	return flush()
}
