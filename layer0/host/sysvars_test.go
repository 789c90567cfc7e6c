package host

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

func TestExpandSystem(t *testing.T) {
	vars := map[string]string{SystemVarData: "/var/lib/gantry", SystemVarAddr: "127.0.0.3", SystemVarEtcd: "https://127.0.0.2:7379,https://127.0.0.3:7379"}
	for _, tc := range []struct {
		name    string
		spec    keyspace.JobSpec
		want    keyspace.JobSpec
		wantErr string
	}{
		{
			name: "app job left alone",
			spec: keyspace.JobSpec{Cmd: []string{"echo", "{{data}}"}},
			want: keyspace.JobSpec{Cmd: []string{"echo", "{{data}}"}},
		},
		{
			name: "system job expanded",
			spec: keyspace.JobSpec{System: "gantry-router", Entrypoint: []string{"gantryd"},
				Cmd:   []string{"router", "--data", "{{data}}", "--http-addr", "{{addr}}:8080", "--etcd", "{{etcd}}"},
				Binds: []keyspace.Bind{{Source: "{{data}}", Target: "{{data}}"}}},
			want: keyspace.JobSpec{System: "gantry-router", Entrypoint: []string{"gantryd"},
				Cmd:   []string{"router", "--data", "/var/lib/gantry", "--http-addr", "127.0.0.3:8080", "--etcd", "https://127.0.0.2:7379,https://127.0.0.3:7379"},
				Binds: []keyspace.Bind{{Source: "/var/lib/gantry", Target: "/var/lib/gantry"}}},
		},
		{
			name:    "unknown placeholder",
			spec:    keyspace.JobSpec{System: "gantry-router", Cmd: []string{"router", "{{zone}}", "{{zone}}"}},
			wantErr: "names {{zone}}, which this host",
		},
		{
			name: "no placeholder",
			spec: keyspace.JobSpec{System: "gantry-scheduler", Cmd: []string{"scheduler", "--data", "/d"}},
			want: keyspace.JobSpec{System: "gantry-scheduler", Cmd: []string{"scheduler", "--data", "/d"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := keyspace.Assignment{JobID: "j1", Spec: tc.spec}
			got, err := expandSystem(a, vars)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Spec, tc.want) {
				t.Errorf("spec = %+v\nwant %+v", got.Spec, tc.want)
			}
		})
	}
	// The assignment it was given is not changed.
	a := keyspace.Assignment{Spec: keyspace.JobSpec{System: "x", Binds: []keyspace.Bind{{Source: "{{data}}", Target: "/t"}}}}
	if _, err := expandSystem(a, vars); err != nil {
		t.Fatal(err)
	}
	if a.Spec.Binds[0].Source != "{{data}}" {
		t.Errorf("the original binds changed: %+v", a.Spec.Binds)
	}
}
