package cli

import (
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestHostState(t *testing.T) {
	tests := []struct {
		name string
		host types.Host
		want string
	}{
		{"up", types.Host{State: types.HostUp, Healthy: true}, "up"},
		{"unhealthy with its reason, on one line", types.Host{State: types.HostUnhealthy, Reason: "Docker is unreachable\ndial unix: no such file"}, "unhealthy: Docker is unreachable ..."},
		{"draining", types.Host{State: types.HostDraining, Healthy: true, Drain: true}, "draining"},
		{"down", types.Host{State: types.HostDown}, "down"},
		{"a controller without states: healthy", types.Host{Healthy: true}, "up"},
		{"a controller without states: unhealthy", types.Host{Reason: "Docker is unreachable"}, "unhealthy: Docker is unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hostState(tc.host); got != tc.want {
				t.Errorf("hostState(%+v) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}
