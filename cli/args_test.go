package cli

import (
	"reflect"
	"strings"
	"testing"

	urfave "github.com/urfave/cli/v2"
)

func TestHoistFlags(t *testing.T) {
	t.Parallel()
	app := (&runner{}).newApp()
	tests := []struct {
		in   string
		want string
	}{
		{in: "gantry", want: "gantry"},
		{in: "gantry apps --json", want: "gantry apps --json"},
		{in: "gantry cluster add local http://h:1 --token T", want: "gantry cluster add --token T local http://h:1"},
		{in: "gantry cluster add local http://h:1 --token=T --default", want: "gantry cluster add --token=T --default local http://h:1"},
		{in: "gantry env set A=1 -a demo B=2", want: "gantry env set -a demo A=1 B=2"},
		{in: "gantry env -a demo set A=1 -c prod", want: "gantry env -a demo set -c prod A=1"},
		{in: "gantry env --json -a demo", want: "gantry env --json -a demo"},
		{in: "gantry keys add id.pub -c prod", want: "gantry keys add -c prod id.pub"},
		{in: "gantry env unset -a demo -- -X", want: "gantry env unset -a demo -- -X"},
		{in: "gantry env get K -- -a x", want: "gantry env get -- K -a x"},
		{in: "gantry apps extra --bogus", want: "gantry apps --bogus extra"},
		{in: "gantry create demo --json", want: "gantry create --json demo"},
		{in: "gantry help env", want: "gantry help env"},
		{in: "gantry frobnicate -x y", want: "gantry -x frobnicate y"},
		{in: "gantry env set -a", want: "gantry env set -a"},
		{in: "gantry scale web=1 -a", want: "gantry scale -a"},
		{in: "gantry scale web=1 --no-wait -a", want: "gantry scale --no-wait -a"},
		{in: "gantry release create -a web1 --image IMG --process web=/app --health web=/healthz", want: "gantry release create -a web1 --image IMG --process web=/app --health web=/healthz"},
		{in: "gantry release create --image IMG -a web1 --process web=/app", want: "gantry release create --image IMG -a web1 --process web=/app"},
		{in: "gantry release -a web1 create --image IMG", want: "gantry release create -a web1 --image IMG"},
		{in: "gantry -a web1 release create --image IMG", want: "gantry release create -a web1 --image IMG"},
		{in: "gantry --app=web1 release create --image=IMG", want: "gantry release create --app=web1 --image=IMG"},
		{in: "gantry scale -a web1 web=3", want: "gantry scale -a web1 web=3"},
		{in: "gantry scale web=3 -a web1", want: "gantry scale -a web1 web=3"},
		{in: "gantry scale web=3 worker=1 --app web1 --no-wait", want: "gantry scale --app web1 --no-wait web=3 worker=1"},
		{in: "gantry -a web1 scale web=3", want: "gantry scale -a web1 web=3"},
		{in: "gantry -a scale scale web=3", want: "gantry scale -a scale web=3"},
		{in: "gantry -c prod -a web1 ps --json", want: "gantry ps -c prod -a web1 --json"},
		{in: "gantry kill web.1 -a web1", want: "gantry kill -a web1 web.1"},
		{in: "gantry route -a web1 add www.example.test --https-only", want: "gantry route -a web1 add --https-only www.example.test"},
		{in: "gantry route add www.example.test --cert c.pem -a web1 --key k.pem", want: "gantry route add --cert c.pem -a web1 --key k.pem www.example.test"},
		{in: "gantry -a web1 route add www.example.test", want: "gantry route add -a web1 www.example.test"},
		{in: "gantry https-only on -a web1", want: "gantry https-only -a web1 on"},
		{in: "gantry -a web1 https-only off", want: "gantry https-only -a web1 off"},
		{in: "gantry --json apps", want: "gantry apps --json"},
		{in: "gantry -a web1", want: "gantry -a web1"},
		{in: "gantry -a web1 frobnicate", want: "gantry -a web1 frobnicate"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := hoistFlags(app, strings.Fields(tt.in))
			if want := strings.Fields(tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("hoistFlags(%q) = %q, want %q", tt.in, got, want)
			}
		})
	}
}

// TestFlagNamesAgree checks what hoistFlags relies on: a flag name takes a
// value everywhere in the command tree or nowhere.
func TestFlagNamesAgree(t *testing.T) {
	t.Parallel()
	app := (&runner{}).newApp()
	seen := map[string]bool{}
	var walk func(path string, flags []urfave.Flag, cmds []*urfave.Command)
	walk = func(path string, flags []urfave.Flag, cmds []*urfave.Command) {
		for _, f := range flags {
			v, ok := f.(interface{ TakesValue() bool })
			takes := ok && v.TakesValue()
			for _, name := range f.Names() {
				if prev, ok := seen[name]; ok && prev != takes {
					t.Errorf("%s: flag %s takes a value (%v) unlike elsewhere", path, name, takes)
				}
				seen[name] = takes
			}
		}
		for _, c := range cmds {
			walk(path+" "+c.Name, c.Flags, c.Subcommands)
		}
	}
	walk("gantry", app.Flags, app.Commands)
	if !seen["a"] || !seen["app"] {
		t.Fatalf("no -a/--app flag with a value in the tree: %v", seen)
	}
}

// FuzzHoistFlags checks that rewriting a command line only reorders it
// (dropping at most a trailing "--" and, when a flag lacks its value, the
// positional arguments), keeps the program name first, and is stable.
func FuzzHoistFlags(f *testing.F) {
	for _, s := range []string{
		"scale web=3 -a demo", "-a demo release create --image x --process web=/a",
		"route -a demo add d --cert c --key k", "env set -a", "kill -- -x", "-c", "--json apps x",
		"release -a scale create", "help scale", "frobnicate -x y --",
	} {
		f.Add(s)
	}
	app := (&runner{}).newApp()
	f.Fuzz(func(t *testing.T, line string) {
		args := append([]string{"gantry"}, strings.Fields(line)...)
		got := hoistFlags(app, args)
		if len(got) == 0 || got[0] != "gantry" {
			t.Fatalf("hoistFlags(%q) = %q: lost the program name", args, got)
		}
		left := map[string]int{}
		for _, a := range args {
			left[a]++
		}
		for _, a := range got {
			if left[a] == 0 {
				t.Fatalf("hoistFlags(%q) = %q: %q was added", args, got, a)
			}
			left[a]--
		}
		if again := hoistFlags(app, got); !reflect.DeepEqual(again, got) {
			t.Fatalf("hoistFlags is not stable: %q -> %q -> %q", args, got, again)
		}
	})
}
