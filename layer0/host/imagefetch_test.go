package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

func TestPeerOrder(t *testing.T) {
	h := func(id string, healthy bool) keyspace.Host {
		return keyspace.Host{ID: id, APIURL: "http://" + id, Healthy: healthy}
	}
	noAPI := h("x", true)
	noAPI.APIURL = ""
	// reverse stands for a shuffle: it shows what each group holds and
	// that groups are shuffled apart.
	reverse := func(n int, swap func(i, j int)) {
		for i := range n / 2 {
			swap(i, n-1-i)
		}
	}
	tests := []struct {
		name  string
		hosts []keyspace.Host
		want  []string
	}{
		{"no hosts", nil, nil},
		{"only self", []keyspace.Host{h("self", true)}, nil},
		{"healthy first", []keyspace.Host{h("u1", false), h("a", true), h("self", true), h("b", true), h("u2", false)},
			[]string{"b", "a", "u2", "u1"}},
		{"without an API", []keyspace.Host{noAPI, h("a", false)}, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range peerOrder(tc.hosts, "self", reverse) {
				got = append(got, p.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("peerOrder = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidImageRef(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"demo:v2", true},
		{"gantry/platform:1.2.0-0123456789ab", true},
		{"team/app:1", true},
		{"demo@sha256:" + strings.Repeat("a", 64), true},
		{"sha256:" + strings.Repeat("b", 64), true},
		{"", false},
		{"Demo/App", false},
		{"../images/json", false},
		{"demo:v2 other:v1", false},
		{"demo:v2\n", false},
		{"demo?x=1", false},
		{"a" + strings.Repeat("/b", maxImageRef/2), false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.ref), func(t *testing.T) {
			if err := validImageRef(tc.ref); (err == nil) != tc.ok {
				t.Errorf("validImageRef(%q) = %v, want ok %v", tc.ref, err, tc.ok)
			}
		})
	}
}

func TestFetchErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *fetchError
		want string
	}{
		{"two hosts", &fetchError{ref: "demo:v2", tries: []hostTry{
			{"a", fmt.Errorf("save image demo:v2: %w", hostclient.NewError(hostclient.ErrImageNotFound, "no image demo:v2 on host a"))},
			{"b", fmt.Errorf("after 10 bytes: %w", errStalled)},
		}}, "image not found: demo:v2; asked host a: does not have it, host b: after 10 bytes: no data for 1m0s"},
		{"an old agent", &fetchError{ref: "demo:v2", tries: []hostTry{
			{"a", hostclient.NewError(hostclient.ErrNotFound, "no route GET /v1/images/save")},
		}}, "image not found: demo:v2; asked host a: no route GET /v1/images/save (404 not_found)"},
		{"out of time", &fetchError{ref: "demo:v2", timedOut: true, tries: []hostTry{{"a", errFetchTimeout}}},
			"image not found: demo:v2; asked host a: out of time; gave up after 10m0s"},
		{"a long reason", &fetchError{ref: "demo:v2", tries: []hostTry{{"a", errors.New(strings.Repeat("é", 200))}}},
			"image not found: demo:v2; asked host a: " + strings.Repeat("é", maxHostReason/2) + "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
