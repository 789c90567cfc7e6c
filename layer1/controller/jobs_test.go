package controller_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestJobsCrashDetails writes assignments as the scheduler does (restart
// counts, the restart time of a crashed job waiting for its back-off, the
// exit carried to a replacement) and job states as a host agent does, and
// checks what GET /v1/apps/{app}/jobs makes of each.
func TestJobsCrashDetails(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	v1, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v1"))
	if err != nil {
		t.Fatal(err)
	}
	placed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	started := placed.Add(time.Second)
	crashedAt := placed.Add(3 * time.Second)
	restartAt := crashedAt.Add(20 * time.Second)
	exit1, exit137 := 1, 137
	earlier := &keyspace.Exit{ExitCode: &exit137, Error: "out of memory", LastLines: []string{"allocating"}, At: placed.Add(-time.Minute)}
	spec := keyspace.JobSpec{App: "demo", Release: v1.ID, ReleaseVersion: 1, Type: "web"}
	buildSpec := keyspace.JobSpec{App: "demo", Release: "build-0123", Type: "build", OneOff: true}

	tests := []struct {
		name  string
		asg   *keyspace.Assignment // nil: the placement is gone
		state *keyspace.JobState   // nil: not reported yet
		want  types.Job
	}{
		{
			name: "crashed, waiting for its back-off",
			asg:  &keyspace.Assignment{Spec: spec, Index: 1, Restarts: 4, CreatedAt: placed, RestartAt: restartAt, LastExit: earlier},
			state: &keyspace.JobState{State: keyspace.StateCrashed, ExitCode: &exit1, LastLines: []string{"connecting", "fatal: no DATABASE_URL"},
				StartedAt: started, UpdatedAt: crashedAt},
			want: types.Job{Release: 1, Type: "web", Index: 1, State: types.JobCrashed, StartedAt: started, UpdatedAt: crashedAt,
				Restarts: 4, ExitCode: &exit1, LastLines: []string{"connecting", "fatal: no DATABASE_URL"}, RestartAt: restartAt,
				LastExit: &types.JobExit{ExitCode: &exit1, At: crashedAt, LastLines: []string{"connecting", "fatal: no DATABASE_URL"}}},
		},
		{
			name:  "crashed, replaced at once (no restart time recorded)",
			asg:   &keyspace.Assignment{Spec: spec, Index: 2, Restarts: 1, CreatedAt: placed},
			state: &keyspace.JobState{State: keyspace.StateCrashed, Error: "image not found: demo:v1", UpdatedAt: crashedAt},
			want: types.Job{Release: 1, Type: "web", Index: 2, State: types.JobCrashed, UpdatedAt: crashedAt, Restarts: 1,
				Error: "image not found: demo:v1", LastExit: &types.JobExit{Error: "image not found: demo:v1", At: crashedAt}},
		},
		{
			name:  "starting after a crash: the exit its assignment carries",
			asg:   &keyspace.Assignment{Spec: spec, Index: 3, Restarts: 2, CreatedAt: placed, LastExit: earlier},
			state: &keyspace.JobState{State: keyspace.StateStarting, StartedAt: started, UpdatedAt: started},
			want: types.Job{Release: 1, Type: "web", Index: 3, State: types.JobStarting, StartedAt: started, UpdatedAt: started, Restarts: 2,
				LastExit: &types.JobExit{ExitCode: &exit137, Error: "out of memory", At: placed.Add(-time.Minute), LastLines: []string{"allocating"}}},
		},
		{
			name: "pending after a crash",
			asg:  &keyspace.Assignment{Spec: spec, Index: 4, Restarts: 3, CreatedAt: placed, LastExit: earlier},
			want: types.Job{Release: 1, Type: "web", Index: 4, State: types.JobPending, UpdatedAt: placed, Restarts: 3,
				LastExit: &types.JobExit{ExitCode: &exit137, Error: "out of memory", At: placed.Add(-time.Minute), LastLines: []string{"allocating"}}},
		},
		{
			name:  "up: a restart time left in the assignment is not shown",
			asg:   &keyspace.Assignment{Spec: spec, Index: 5, CreatedAt: placed, RestartAt: restartAt},
			state: &keyspace.JobState{State: keyspace.StateUp, Addr: "127.0.0.1:49153", StartedAt: started, UpdatedAt: started},
			want: types.Job{Release: 1, Type: "web", Index: 5, State: types.JobUp, Addr: "127.0.0.1:49153",
				StartedAt: started, UpdatedAt: started},
		},
		{
			name:  "a running build",
			asg:   &keyspace.Assignment{Spec: buildSpec, Index: 1, CreatedAt: placed},
			state: &keyspace.JobState{State: keyspace.StateUp, StartedAt: started, UpdatedAt: started},
			want: types.Job{Release: 0, Type: "build", Index: 1, State: types.JobUp, StartedAt: started, UpdatedAt: started,
				OneOff: true},
		},
		{
			name:  "a failed build is not restarted",
			asg:   &keyspace.Assignment{Spec: buildSpec, Index: 2, CreatedAt: placed, RestartAt: restartAt},
			state: &keyspace.JobState{State: keyspace.StateCrashed, ExitCode: &exit1, StartedAt: started, UpdatedAt: crashedAt},
			want: types.Job{Release: 0, Type: "build", Index: 2, State: types.JobCrashed, StartedAt: started, UpdatedAt: crashedAt,
				ExitCode: &exit1, OneOff: true, LastExit: &types.JobExit{ExitCode: &exit1, At: crashedAt}},
		},
		{
			name:  "a build being removed after its placement is gone",
			state: &keyspace.JobState{State: keyspace.StateStopping, StartedAt: started, UpdatedAt: crashedAt},
			want: types.Job{Release: 0, Type: "build", Index: 3, State: types.JobStopping, StartedAt: started, UpdatedAt: crashedAt,
				OneOff: true},
		},
	}
	ids := make([]string, len(tests))
	for i, tt := range tests {
		typ, release := "web", v1.ID
		if tt.want.Type == "build" {
			typ, release = "build", buildSpec.Release
		}
		id := fmt.Sprintf("demo.%s.%d.0000000000a%d", typ, tt.want.Index, i)
		ids[i] = id
		if tt.asg != nil {
			asg := *tt.asg
			asg.JobID, asg.HostID = id, "host-1"
			a.put(t, a.space.Assignment("host-1", id), asg)
		}
		if tt.state != nil {
			st := *tt.state
			st.JobID, st.HostID, st.App, st.Release, st.Type = id, "host-1", "demo", release, typ
			a.put(t, a.space.Job(id), st)
		}
	}

	jobs, err := a.c.ListJobs(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]types.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	if len(byID) != len(tests) {
		t.Errorf("ListJobs gave %d jobs, want %d: %+v", len(byID), len(tests), jobs)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			want.ID, want.App, want.Host = ids[i], "demo", "host-1"
			if got, w := mustMarshal(t, byID[ids[i]]), mustMarshal(t, want); got != w {
				t.Errorf("job\n got %s\nwant %s", got, w)
			}
		})
	}

	// The wire shape: a job with nothing to say about crashes has none of
	// the crash fields.
	_, body := a.raw(t, "GET", "/v1/apps/demo/jobs", "", "Bearer "+a.token)
	var wire []map[string]any
	if err := json.Unmarshal(body, &wire); err != nil {
		t.Fatalf("GET jobs = %s: %v", body, err)
	}
	for _, j := range wire {
		if j["id"] != ids[4] {
			continue
		}
		for _, field := range []string{"restart_at", "last_exit", "one_off", "exit_code", "last_lines"} {
			if _, ok := j[field]; ok {
				t.Errorf("an up job with no crash has %q: %v", field, j)
			}
		}
	}
}
