package scheduler

import (
	"reflect"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
)

// TestCrashBackoffRecorded plays the controller and a host agent: a job
// that crashes is replaced at once (one free restart), and its replacement
// carries the crash; when the replacement crashes too, it waits for its
// back-off (an hour), and its assignment in etcd says until when.
func TestCrashBackoffRecorded(t *testing.T) {
	etcd := etcdOrSkip(t)
	lease := registerHost(t, etcd, "host-a")
	runScheduler(t, etcd, "s1", func(c *Config) {
		c.Backoff = placement.Backoff{Free: 1, Base: time.Hour, Cap: 2 * time.Hour}
	})
	putFormation(t, etcd, "blog", "r1", 1, "web", 1)
	waitFor(t, "web.1 placed", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1, describe(as)
	})
	first := assignments(t, etcd)[0]

	// The crashes are reported as having happened a second after the
	// start, so the restart count never starts again.
	crash := func(a keyspace.Assignment, code int, at time.Time, lines ...string) keyspace.JobState {
		st := keyspace.JobState{
			JobID: a.JobID, HostID: a.HostID, App: "blog", Release: "r1", Type: "web",
			State: keyspace.StateCrashed, ExitCode: &code, LastLines: lines,
			StartedAt: at.Add(-time.Second), UpdatedAt: at,
		}
		put(t, etcd, space.Job(a.JobID), st, clientv3.WithLease(lease))
		return st
	}
	at1 := time.Now().UTC().Truncate(time.Millisecond)
	crash(first, 3, at1, "starting", "panic: boom")
	waitFor(t, "the crashed job replaced at once", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1 && as[0].JobID != first.JobID, describe(as)
	})
	second := assignments(t, etcd)[0]
	code3 := 3
	wantExit := &keyspace.Exit{ExitCode: &code3, At: at1, LastLines: []string{"starting", "panic: boom"}}
	if second.Restarts != 1 || second.Index != 1 || !second.RestartAt.IsZero() || !reflect.DeepEqual(second.LastExit, wantExit) {
		t.Fatalf("replacement %+v (last exit %+v), want restarts 1, index 1, no restart time and last exit %+v", second, second.LastExit, wantExit)
	}

	at2 := time.Now().UTC().Truncate(time.Millisecond)
	crash(second, 1, at2, "again")
	due := at2.Add(time.Hour) // Delay(1) with one free restart: the base
	waitFor(t, "the restart time of the crashed replacement recorded", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1 && as[0].JobID == second.JobID && as[0].RestartAt.Equal(due), describe(as) + " restart at " + fmtTimes(as)
	})
	got := assignments(t, etcd)[0]
	got.RestartAt = time.Time{}
	if !reflect.DeepEqual(got, second) {
		t.Errorf("the recorded assignment %+v differs from %+v in more than its restart time", got, second)
	}
}

func fmtTimes(as []keyspace.Assignment) string {
	s := ""
	for _, a := range as {
		s += a.RestartAt.Format(time.RFC3339Nano) + " "
	}
	return s
}
