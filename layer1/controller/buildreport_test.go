package controller

import (
	"net"
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

func TestInternalURL(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:7070", "http://127.0.0.1:7070"},
		{"0.0.0.0:7070", "http://127.0.0.1:7070"},
		{"[::]:7070", "http://127.0.0.1:7070"},
		{"10.0.0.5:7070", "http://10.0.0.5:7070"},
		{"[::1]:7070", "http://[::1]:7070"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := internalURL(addr); got != tt.want {
				t.Errorf("internalURL(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}
