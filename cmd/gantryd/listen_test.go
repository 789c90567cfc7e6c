package main

import "testing"

// TestListenAddrs checks that every listener binds the advertised IP with
// its usual port unless its flag is set.
func TestListenAddrs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		advertise  string
		containers bool
		set        map[string]string
		want       map[string]string // a subset of the result
	}{
		{"defaults", "127.0.0.1", true, nil, map[string]string{
			"api-addr": "127.0.0.1:7070", "http-addr": "127.0.0.1:8080", "https-addr": "127.0.0.1:8443",
			"ssh-addr": "127.0.0.1:2222", "host-api-addr": "127.0.0.1:7071", "log-addr": "127.0.0.1:7072",
			"etcd-client-addr": "127.0.0.1:7379", "etcd-peer-addr": "127.0.0.1:7380", "postgres-addr": "127.0.0.1:7432",
		}},
		{"advertised", "127.0.0.3", true, nil, map[string]string{
			"api-addr": "127.0.0.3:7070", "http-addr": "127.0.0.3:8080", "etcd-peer-addr": "127.0.0.3:7380", "postgres-addr": "127.0.0.3:7432",
		}},
		{"a flag wins", "127.0.0.3", true, map[string]string{"http-addr": "0.0.0.0:80"}, map[string]string{
			"http-addr": "0.0.0.0:80", "https-addr": "127.0.0.3:8443",
		}},
		{"in process: free log port", "127.0.0.1", false, nil, map[string]string{"log-addr": "127.0.0.1:0", "api-addr": "127.0.0.1:7070"}},
		{"in process: log flag kept", "127.0.0.1", false, map[string]string{"log-addr": "127.0.0.1:9000"}, map[string]string{"log-addr": "127.0.0.1:9000"}},
		{"IPv6", "::1", true, nil, map[string]string{"api-addr": "[::1]:7070"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := listenAddrs(tc.advertise, tc.containers, func(name string) (string, bool) {
				v, ok := tc.set[name]
				return v, ok
			})
			if len(got) != len(upListeners) {
				t.Errorf("got %d addresses, want %d", len(got), len(upListeners))
			}
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
		})
	}
}
