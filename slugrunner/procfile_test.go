package slugrunner

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseProcfile(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     map[string]string
		wantLine int // non-zero: a *ProcfileError on this line
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{
			name: "types comments and blank lines",
			in:   "# processes\n\nweb: bundle exec puma -p $PORT\n  # indented comment\nworker:bin/worker --queue=default  \nclock_2-b: \tclockwork clock.rb\n",
			want: map[string]string{
				"web":       "bundle exec puma -p $PORT",
				"worker":    "bin/worker --queue=default",
				"clock_2-b": "clockwork clock.rb",
			},
		},
		{name: "CRLF line ends", in: "web: node server.js\r\nworker: node w.js\r\n", want: map[string]string{"web": "node server.js", "worker": "node w.js"}},
		{name: "no final newline", in: "web: ./run", want: map[string]string{"web": "./run"}},
		{name: "colons in the command", in: "web: env A=b:c ./run --x=y:z", want: map[string]string{"web": "env A=b:c ./run --x=y:z"}},
		{name: "duplicate type", in: "web: a\n\nweb: b\n", wantLine: 3},
		{name: "missing colon", in: "web: a\nworker ./w\n", wantLine: 2},
		{name: "empty command", in: "web:   \n", wantLine: 1},
		{name: "empty name", in: ": ./run\n", wantLine: 1},
		{name: "space in name", in: "web server: ./run\n", wantLine: 1},
		{name: "space before colon", in: "web : ./run\n", wantLine: 1},
		{name: "indented type", in: "  web: ./run\n", wantLine: 1},
		{name: "dot in name", in: "web.1: ./run\n", wantLine: 1},
		{name: "upper case name", in: "web: a\nWeb: ./run\n", wantLine: 2},
		{name: "name starts with a digit", in: "1web: ./run\n", wantLine: 1},
		{name: "name too long", in: strings.Repeat("w", 31) + ": ./run\n", wantLine: 1},
		{name: "NUL in command", in: "web: ./run \x00x\n", wantLine: 1},
		{name: "100 types", in: manyTypes(100), want: manyTypesMap(100)},
		{name: "101 types", in: manyTypes(101), wantLine: 101},
		{name: "at the size limit", in: "web: a\n" + strings.Repeat("#", MaxProcfileSize-8) + "\n", want: map[string]string{"web": "a"}},
		{name: "over the size limit", in: "web: a\n" + strings.Repeat("#\n", MaxProcfileSize/2), wantLine: MaxProcfileSize/2 - 2},
		{name: "line too long", in: "web: a\nworker: " + strings.Repeat("x", maxProcfileLine) + "\n", wantLine: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcfile(strings.NewReader(tt.in))
			if tt.wantLine != 0 {
				var pe *ProcfileError
				if !errors.As(err, &pe) || pe.Line != tt.wantLine {
					t.Fatalf("ParseProcfile: %v, want a ProcfileError on line %d", err, tt.wantLine)
				}
				if !errors.Is(err, ErrProcfile) {
					t.Errorf("error %v does not wrap ErrProcfile", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseProcfile: %v", err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseProcfile = %q, want %q", got, tt.want)
			}
		})
	}
}

// manyTypes returns a Procfile of n types, t0 to t<n-1>.
func manyTypes(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "t%d: ./run %d\n", i, i)
	}
	return b.String()
}

func manyTypesMap(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("t%d", i)] = fmt.Sprintf("./run %d", i)
	}
	return m
}

func FuzzParseProcfile(f *testing.F) {
	f.Add(manyTypes(101))
	f.Add("web: bundle exec puma\nworker: sidekiq\n")
	f.Add("# comment\n\nweb:./run\r\n")
	f.Add("web: a\nweb: b\n")
	f.Add("bad line\n")
	f.Add("web: \u00a0x\u0085\n")
	name := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	f.Fuzz(func(t *testing.T, in string) {
		types, err := ParseProcfile(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrProcfile) {
				t.Fatalf("error %v does not wrap ErrProcfile", err)
			}
			return
		}
		if len(types) > MaxProcessTypes || len(in) > MaxProcfileSize {
			t.Fatalf("accepted %d types from %d bytes", len(types), len(in))
		}
		// Every result is well formed and survives a round trip.
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(types)) {
			v := types[k]
			if !name.MatchString(k) {
				t.Fatalf("type %q is not a valid name", k)
			}
			if v == "" || v != strings.TrimSpace(v) || strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("type %q has command %q", k, v)
			}
			b.WriteString(k + ": " + v + "\n")
		}
		again, err := ParseProcfile(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("reparse %q: %v", b.String(), err)
		}
		if !maps.Equal(again, types) {
			t.Fatalf("round trip: %q, want %q", again, types)
		}
	})
}
