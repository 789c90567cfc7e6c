package deployer

import (
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

func TestDescribeJob(t *testing.T) {
	one := 1
	started := time.Now()
	tests := []struct {
		name string
		st   keyspace.JobState
		want string
	}{
		{"never binds $PORT", keyspace.JobState{JobID: "a.web.1.x", Type: "web", State: keyspace.StateStarting, StartedAt: started},
			"web (a.web.1.x) runs, but nothing answered on $PORT (8080)"},
		{"worker never healthy", keyspace.JobState{JobID: "a.worker.1.x", Type: "worker", State: keyspace.StateStarting, StartedAt: started},
			"never passed its health check"},
		{"not started", keyspace.JobState{JobID: "a.web.1.x", Type: "web", State: keyspace.StateStarting}, "never started"},
		{"crashed", keyspace.JobState{JobID: "a.web.1.x", Type: "web", State: keyspace.StateCrashed, ExitCode: &one}, "web crashed: exit status 1"},
		{"stopping", keyspace.JobState{JobID: "a.web.1.x", Type: "web", State: keyspace.StateStopping}, "web (a.web.1.x) is stopping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeJob(tt.st); !strings.Contains(got, tt.want) {
				t.Errorf("describeJob = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}
