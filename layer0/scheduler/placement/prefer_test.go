package placement

import (
	"testing"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// TestPreferHost places a new job whose template prefers a host: on that
// host when it is eligible and has room, as usual (the most free memory
// here, host a) otherwise.
func TestPreferHost(t *testing.T) {
	build := func(prefer string, constraints map[string]string, mem int64) keyspace.Formation {
		f := form("app", "build-1", 0, "build", 1)
		f.Template.PreferHost = prefer
		f.Template.Constraints = constraints
		f.Template.Resources.Memory = mem
		f.Template.OneOff = true
		return f
	}
	unhealthy := host("b", 2*gib)
	unhealthy.Healthy = false
	// Another job of the app's build type already on b: without the
	// preference the spread alone would avoid b.
	otherForm := build("", nil, 0)
	otherForm.Release = "build-0"
	other := assign(otherForm, "b", "app.build.1.old", 1, t0)

	tests := []struct {
		name        string
		prefer      string
		constraints map[string]string
		mem         int64
		hosts       []keyspace.Host
		assigns     []keyspace.Assignment
		flags       map[string]keyspace.HostFlags
		want        string
	}{
		{name: "no preference", hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)}, want: "a"},
		{name: "preferred host", prefer: "b", hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)}, want: "b"},
		{name: "preferred over the spread", prefer: "b", hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)},
			assigns: []keyspace.Assignment{other}, want: "b"},
		{name: "preferred host gone", prefer: "c", hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)}, want: "a"},
		{name: "preferred host unhealthy", prefer: "b", hosts: []keyspace.Host{host("a", 4*gib), unhealthy}, want: "a"},
		{name: "preferred host drained", prefer: "b", hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)},
			flags: map[string]keyspace.HostFlags{"b": {Drain: true, DrainedAt: t0}}, want: "a"},
		{name: "preferred host lacks the tags", prefer: "b", constraints: map[string]string{"zone": "x"},
			hosts: []keyspace.Host{host("a", 4*gib, "zone", "x"), host("b", 2*gib, "zone", "y")}, want: "a"},
		{name: "preferred host with the tags", prefer: "b", constraints: map[string]string{"zone": "x"},
			hosts: []keyspace.Host{host("a", 4*gib, "zone", "x"), host("b", 2*gib, "zone", "x")}, want: "b"},
		{name: "preferred host without room", prefer: "b", mem: 3 * gib,
			hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)}, want: "a"},
		{name: "no host with room", prefer: "b", mem: 8 * gib,
			hosts: []keyspace.Host{host("a", 4*gib), host("b", 2*gib)}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Snapshot{
				Now: t0, Hosts: tc.hosts, Assignments: tc.assigns, Flags: tc.flags,
				Formations: []keyspace.Formation{build(tc.prefer, tc.constraints, tc.mem)},
			}
			if len(tc.assigns) > 0 {
				s.Formations = append(s.Formations, otherForm)
			}
			p := Place(s)
			got := ""
			for _, st := range p.Start {
				if st.Assignment.Spec.Release == "build-1" {
					got = st.Assignment.HostID
				}
			}
			if got != tc.want {
				t.Errorf("the job went to %q, want %q (plan %+v)", got, tc.want, p)
			}
			if tc.want == "" && len(p.Unplaced) != 1 {
				t.Errorf("unplaced: %+v, want the job", p.Unplaced)
			}
		})
	}
}
