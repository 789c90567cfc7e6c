package slugbuilder

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseReleaseYAML(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string // substring of the error; "" means success
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "heroku style", in: "---\naddons: []\nconfig_vars:\n  PATH: /app/bin:/usr/bin\n  LANG: en_US.UTF-8\ndefault_process_types:\n  web: bin/server --port $PORT\n  worker: bin/worker\n",
			want: map[string]string{"web": "bin/server --port $PORT", "worker": "bin/worker"}},
		{name: "four spaces and comments", in: "# made by a buildpack\ndefault_process_types:   # types\n    web: ./run   # plain comment\n\n    # between\n    clock: ./clock#not-a-comment\n",
			want: map[string]string{"web": "./run", "clock": "./clock#not-a-comment"}},
		{name: "quoted", in: "default_process_types:\n  web: \"bin/x --name \\\"a b\\\" # kept\\t\\u00e9\"\n  worker: 'it''s # kept'   # dropped\n  \"cron\": 'x'\n",
			want: map[string]string{"web": "bin/x --name \"a b\" # kept\té", "worker": "it's # kept", "cron": "x"}},
		{name: "no types", in: "default_process_types: {}\naddons: []\n", want: map[string]string{}},
		{name: "null types", in: "default_process_types: ~\n", want: map[string]string{}},
		{name: "types then other keys", in: "default_process_types:\n  web: a\nconfig_vars:\n  web: not a type\n", want: map[string]string{"web": "a"}},
		{name: "nested other keys skipped", in: "addons:\n  - heroku-postgresql\n  - x:\n      deep: 1\ndefault_process_types:\n  web: a\n", want: map[string]string{"web": "a"}},
		{name: "document markers and CRLF", in: "--- \r\ndefault_process_types:\r\n  web: a b\r\n...\r\n", want: map[string]string{"web": "a b"}},
		{name: "colon in command", in: "default_process_types:\n  web: env A=b:c ./run\n", want: map[string]string{"web": "env A=b:c ./run"}},
		{name: "bad indentation", in: "default_process_types:\n  web: a\n    worker: b\n", wantErr: "line 3: indentation 4, want 2"},
		{name: "tab", in: "default_process_types:\n\tweb: a\n", wantErr: "line 2: tab in indentation"},
		{name: "duplicate type", in: "default_process_types:\n  web: a\n  web: b\n", wantErr: "line 3: process type \"web\" given twice"},
		{name: "twice", in: "default_process_types:\n  web: a\ndefault_process_types:\n  web: b\n", wantErr: "given twice"},
		{name: "flow mapping", in: "default_process_types: {web: a}\n", wantErr: "must be a block mapping"},
		{name: "block scalar", in: "default_process_types:\n  web: |\n    a\n", wantErr: "unsupported YAML value"},
		{name: "sequence value", in: "default_process_types:\n  web: [a, b]\n", wantErr: "unsupported YAML value"},
		{name: "no command", in: "default_process_types:\n  web:\n", wantErr: "has no command"},
		{name: "bad type name", in: "default_process_types:\n  web server: a\n", wantErr: "is not a process type name"},
		{name: "no colon", in: "default_process_types:\n  web a\n", wantErr: "want 'key: value'"},
		{name: "unterminated", in: "default_process_types:\n  web: \"a\n", wantErr: "unterminated"},
		{name: "bad escape", in: "default_process_types:\n  web: \"\\q\"\n", wantErr: "unknown escape"},
		{name: "junk after quote", in: "default_process_types:\n  web: 'a' b\n", wantErr: "after the quoted value"},
		{name: "indented start", in: "  web: a\n", wantErr: "unexpected indentation"},
		{name: "top-level sequence", in: "- a\n", wantErr: "want 'key: value'"},
		{name: "not UTF-8", in: "default_process_types:\n  web: \xff\n", wantErr: "not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReleaseYAML([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errReleaseYAML) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// formatReleaseYAML writes types as release output with double-quoted
// commands.
func formatReleaseYAML(types map[string]string) string {
	var b strings.Builder
	b.WriteString("---\ndefault_process_types:\n")
	for _, k := range slices.Sorted(maps.Keys(types)) {
		b.WriteString("  " + k + ": \"")
		for _, r := range types[k] {
			switch {
			case r == '"' || r == '\\':
				b.WriteString(`\` + string(r))
			case r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xfeff:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteString("\"\n")
	}
	return b.String()
}

func FuzzParseReleaseYAML(f *testing.F) {
	for _, seed := range []string{
		"---\naddons: []\ndefault_process_types:\n  web: bin/server --port $PORT\n",
		"default_process_types:\n  web: \"a \\\"b\\\" \\u00e9\"\n  worker: 'it''s'\n",
		"config_vars:\n  A: b\ndefault_process_types: {}\n",
		"default_process_types:\n    web: ./x # c\n",
		"default_process_types:\n  web: \"\\x41\\U0001F600\"\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		types, err := parseReleaseYAML(data)
		if err != nil {
			return
		}
		for k, v := range types {
			if !validTypeName(k) || v == "" {
				t.Fatalf("accepted type %q: %q", k, v)
			}
		}
		// What was read reads back the same once written out again.
		again, err := parseReleaseYAML([]byte(formatReleaseYAML(types)))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", formatReleaseYAML(types), err)
		}
		if !maps.Equal(types, again) {
			t.Fatalf("round trip changed %q into %q", types, again)
		}
	})
}
