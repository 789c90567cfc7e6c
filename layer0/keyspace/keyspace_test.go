package keyspace_test

import (
	"errors"
	"testing"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

func TestNew(t *testing.T) {
	cases := []struct {
		cluster string
		ok      bool
	}{
		{"c-7f3a", true},
		{"default", true},
		{"0abc", true},
		{"", false},
		{"Upper", false},
		{"-dash", false},
		{"a/b", false},
		{"a b", false},
	}
	for _, tc := range cases {
		t.Run(tc.cluster, func(t *testing.T) {
			_, err := keyspace.New(tc.cluster)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%q) err = %v, want ok=%v", tc.cluster, err, tc.ok)
			}
			if err != nil && !errors.Is(err, keyspace.ErrInvalidCluster) {
				t.Fatalf("error %v is not ErrInvalidCluster", err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	s := keyspace.MustNew("c1")
	cases := []struct{ got, want string }{
		{s.Host("h1"), "/gantry/c1/hosts/h1"},
		{s.HostFlag("h1"), "/gantry/c1/hostflags/h1"},
		{s.Formation("demo", "r1", "web"), "/gantry/c1/formations/demo/r1/web"},
		{s.Assignment("h1", "j1"), "/gantry/c1/assignments/h1/j1"},
		{s.Job("j1"), "/gantry/c1/jobs/j1"},
		{s.Instance("demo-web", "j1"), "/gantry/c1/services/demo-web/j1"},
		{s.Route("WWW.Example.TEST"), "/gantry/c1/routes/www.example.test"},
		{s.Election("scheduler"), "/gantry/c1/elections/scheduler"},
		{keyspace.Last(s.Assignment("h1", "j1")), "j1"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
