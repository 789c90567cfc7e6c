package deployer

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recent, old := now.Add(-time.Second), now.Add(-time.Hour)
	exit := 2
	running := func(strategy string, fromRunning bool, p store.DeploymentProcess) store.Deployment {
		p.Type = "web"
		return store.Deployment{App: "demo", Status: types.DeployRunning, Strategy: strategy, FromRunning: fromRunning,
			Old: store.ReleaseRef{ID: "r1", Version: 1}, New: store.ReleaseRef{ID: "r2", Version: 2},
			Processes: []store.DeploymentProcess{p}}
	}
	up := func(n int) map[string]int { return map[string]int{"web": n} }
	tests := []struct {
		name string
		dep  store.Deployment
		jobs jobView
		// want is the status and the web step [started, old_left] after.
		status  string
		started int
		oldLeft int
		changed bool
	}{
		{"one-by-one starts one new job", running(types.StrategyOneByOne, true, store.DeploymentProcess{OldLeft: 3, NewCount: 3, OldCount: 3, StepAt: old}),
			jobView{upOld: up(3)}, types.DeployRunning, 1, 3, true},
		{"one-by-one waits for the new job", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 1, OldLeft: 3, NewCount: 3, OldCount: 3, Want: 3, StepAt: recent}),
			jobView{upOld: up(3)}, types.DeployRunning, 1, 3, false},
		{"one-by-one stops an old job once the new one is up", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 1, OldLeft: 3, NewCount: 3, OldCount: 3, Up: 1, Want: 3, StepAt: recent}),
			jobView{upNew: up(1), upOld: up(3)}, types.DeployRunning, 1, 2, true},
		{"one-by-one completes with the last new job up", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 3, OldLeft: 1, NewCount: 3, OldCount: 3, StepAt: recent}),
			jobView{upNew: up(3), upOld: up(1)}, types.DeployComplete, 3, 1, true},
		{"scaled down during the deployment", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 2, OldLeft: 3, NewCount: 1, OldCount: 1, StepAt: recent}),
			jobView{upNew: up(1), upOld: up(3)}, types.DeployComplete, 2, 3, true},
		{"scaled up during the deployment", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 1, OldLeft: 0, NewCount: 3, OldCount: 3, StepAt: recent}),
			jobView{upNew: up(1)}, types.DeployRunning, 3, 0, true},
		{"all-at-once starts every new job", running(types.StrategyAllAtOnce, true, store.DeploymentProcess{OldLeft: 2, NewCount: 2, OldCount: 2, StepAt: old}),
			jobView{upOld: up(2)}, types.DeployRunning, 2, 2, true},
		{"nothing to replace starts every new job", running(types.StrategyOneByOne, false, store.DeploymentProcess{Started: 1, NewCount: 3, StepAt: recent}),
			jobView{}, types.DeployRunning, 3, 0, true},
		{"a crash rolls back", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 1, OldLeft: 3, NewCount: 3, OldCount: 3, StepAt: recent}),
			jobView{upOld: up(3), crashed: []keyspace.JobState{{JobID: "demo.web.1.a", Type: "web", State: keyspace.StateCrashed, ExitCode: &exit}}},
			types.DeployRollingBack, 1, 3, true},
		{"a crash without a running release fails", running(types.StrategyOneByOne, false, store.DeploymentProcess{Started: 1, NewCount: 1, StepAt: recent}),
			jobView{crashed: []keyspace.JobState{{JobID: "demo.web.1.a", Type: "web", State: keyspace.StateCrashed, ExitCode: &exit}}},
			types.DeployFailed, 1, 0, true},
		{"a new job not up in time rolls back", running(types.StrategyOneByOne, true, store.DeploymentProcess{Started: 1, OldLeft: 3, NewCount: 3, OldCount: 3, StepAt: old}),
			jobView{upOld: up(3)}, types.DeployRollingBack, 1, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			change, _, changed := decide(tt.dep, tt.jobs, now, time.Minute)
			p := change.Processes[0]
			if change.Status != tt.status || p.Started != tt.started || p.OldLeft != tt.oldLeft || changed != tt.changed {
				t.Errorf("decide = %s [%d %d] changed %v, want %s [%d %d] changed %v",
					change.Status, p.Started, p.OldLeft, changed, tt.status, tt.started, tt.oldLeft, tt.changed)
			}
			if p.Started > tt.dep.Processes[0].Started && !p.StepAt.Equal(now) {
				t.Errorf("StepAt = %s after a new job was asked for, want now", p.StepAt)
			}
		})
	}
}

func TestDecideRollingBack(t *testing.T) {
	now := time.Now()
	dep := store.Deployment{Status: types.DeployRollingBack, FromRunning: true, RollbackAt: now.Add(-time.Second),
		Old: store.ReleaseRef{ID: "r1"}, New: store.ReleaseRef{ID: "r2"},
		Processes: []store.DeploymentProcess{{Type: "web", Started: 2, OldLeft: 1, NewCount: 2, OldCount: 2}}}
	tests := []struct {
		name    string
		upOld   int
		timeout time.Duration
		want    string
	}{
		{"old release not back yet", 1, time.Minute, types.DeployRollingBack},
		{"old release back at full strength", 2, time.Minute, types.DeployRolledBack},
		{"old release not back in time", 0, time.Millisecond, types.DeployRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			change, _, _ := decide(dep, jobView{upOld: map[string]int{"web": tt.upOld}}, now, tt.timeout)
			if change.Status != tt.want {
				t.Errorf("status = %s, want %s", change.Status, tt.want)
			}
		})
	}
}

// TestDecidePerHost checks the steps of a per-host type: the old
// release's formation stays until the new release has a job up on every
// host where the old one has a job, then goes.
func TestDecidePerHost(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recent, old := now.Add(-time.Second), now.Add(-time.Hour)
	running := func(strategy string, p store.DeploymentProcess) store.Deployment {
		p.Type, p.PerHost, p.NewCount, p.OldCount = "router", true, 1, 1
		return store.Deployment{App: "gantry-router", Status: types.DeployRunning, Strategy: strategy, FromRunning: true,
			Old: store.ReleaseRef{ID: "r1", Version: 1}, New: store.ReleaseRef{ID: "r2", Version: 2},
			Processes: []store.DeploymentProcess{p}}
	}
	hosts := func(ids ...string) map[string]map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return map[string]map[string]bool{"router": m}
	}
	view := func(newUp, oldAny []string) jobView {
		return jobView{upNew: map[string]int{"router": len(newUp)}, upOld: map[string]int{"router": len(oldAny)},
			hostsNew: hosts(newUp...), hostsOld: hosts(oldAny...)}
	}
	ab := []string{"a", "b"}
	tests := []struct {
		name    string
		dep     store.Deployment
		jobs    jobView
		status  string
		started int
		oldLeft int
		up      int
		want    int
	}{
		{"the new formation comes beside the old one", running(types.StrategyOneByOne, store.DeploymentProcess{OldLeft: 1, StepAt: old}),
			view(nil, ab), types.DeployRunning, 1, 1, 0, 2},
		{"new jobs up on some hosts: the old formation stays", running(types.StrategyOneByOne, store.DeploymentProcess{Started: 1, OldLeft: 1, StepAt: recent}),
			view([]string{"a"}, ab), types.DeployRunning, 1, 1, 1, 2},
		{"more new jobs up than hosts still short: the old formation stays", running(types.StrategyOneByOne, store.DeploymentProcess{Started: 1, OldLeft: 1, StepAt: recent}),
			view([]string{"a", "c"}, ab), types.DeployRunning, 1, 1, 2, 3},
		{"new jobs up on every old host: complete, the old formation goes", running(types.StrategyOneByOne, store.DeploymentProcess{Started: 1, OldLeft: 1, StepAt: recent}),
			view(ab, ab), types.DeployComplete, 1, 1, 2, 2},
		{"the old jobs gone: complete", running(types.StrategyOneByOne, store.DeploymentProcess{Started: 1, StepAt: recent}),
			view(ab, nil), types.DeployComplete, 1, 0, 2, 2},
		{"all-at-once completes once the hosts are covered", running(types.StrategyAllAtOnce, store.DeploymentProcess{Started: 1, OldLeft: 1, StepAt: recent}),
			view(ab, ab), types.DeployComplete, 1, 1, 2, 2},
		{"hosts not covered in time: rolls back", running(types.StrategyOneByOne, store.DeploymentProcess{Started: 1, OldLeft: 1, StepAt: old}),
			view([]string{"a"}, ab), types.DeployRollingBack, 1, 1, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			change, _, _ := decide(tt.dep, tt.jobs, now, time.Minute)
			p := change.Processes[0]
			if change.Status != tt.status || p.Started != tt.started || p.OldLeft != tt.oldLeft || p.Up != tt.up || p.Want != tt.want {
				t.Errorf("decide = %s [%d %d] %d of %d up (%s), want %s [%d %d] %d of %d up",
					change.Status, p.Started, p.OldLeft, p.Up, p.Want, change.Error, tt.status, tt.started, tt.oldLeft, tt.up, tt.want)
			}
		})
	}
}
