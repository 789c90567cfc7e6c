package host

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestSystemRestartWait(t *testing.T) {
	for _, tc := range []struct {
		quickExits int
		want       time.Duration
	}{
		{0, 0},
		{1, 250 * time.Millisecond},
		{2, 500 * time.Millisecond},
		{3, time.Second},
		{6, 8 * time.Second},
		{7, maxRetryBackoff},
		{100, maxRetryBackoff},
	} {
		if got := systemRestartWait(tc.quickExits); got != tc.want {
			t.Errorf("systemRestartWait(%d) = %s, want %s", tc.quickExits, got, tc.want)
		}
	}
}

func TestRunTime(t *testing.T) {
	state := func(started, finished string) container.InspectResponse {
		return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
			State: &container.State{StartedAt: started, FinishedAt: finished}}}
	}
	for _, tc := range []struct {
		name string
		info container.InspectResponse
		want time.Duration
		ok   bool
	}{
		{"ran", state("2026-01-02T03:04:05.5Z", "2026-01-02T03:04:17Z"), 11500 * time.Millisecond, true},
		{"no state", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{}}, 0, false},
		{"never finished", state("2026-01-02T03:04:05Z", "0001-01-01T00:00:00Z"), 0, false},
		{"bad time", state("yesterday", "2026-01-02T03:04:17Z"), 0, false},
	} {
		got, ok := runTime(tc.info)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: runTime = %s, %v; want %s, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
