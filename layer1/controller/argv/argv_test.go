package argv

import (
	"bytes"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

var splitTests = []struct {
	name string
	cmd  string
	want []string
	err  error
}{
	{"one word", "/server", []string{"/server"}, nil},
	{"blanks", " \t/server  -port\n8080 ", []string{"/server", "-port", "8080"}, nil},
	{"PORT stays literal", "/server -port $PORT", []string{"/server", "-port", "$PORT"}, nil},
	{"braced PORT stays literal", `/server "--addr=:${PORT}"`, []string{"/server", "--addr=:${PORT}"}, nil},
	{"single quotes", `echo 'a  b' 'x"y'`, []string{"echo", "a  b", `x"y`}, nil},
	{"backslash in single quotes", `echo 'a\b'`, []string{"echo", `a\b`}, nil},
	{"double quotes", `echo "a  'b'"`, []string{"echo", "a  'b'"}, nil},
	{"double quote escapes", `echo "\"\\\$\x"`, []string{"echo", `"\$\x`}, nil},
	{"double quote line continuation", "echo \"a\\\nb\"", []string{"echo", "ab"}, nil},
	{"backslash escapes", `echo a\ b \'c\"`, []string{"echo", "a b", `'c"`}, nil},
	{"line continuation", "echo a\\\nb \\\n c", []string{"echo", "ab", "c"}, nil},
	{"joined pieces", `a'b'"c"d\ e`, []string{`ab` + "cd e"}, nil},
	{"empty words", `prog '' ""`, []string{"prog", "", ""}, nil},
	{"quoted operators", `sh -c 'a | b && c; d > e'`, []string{"sh", "-c", "a | b && c; d > e"}, nil},
	{"escaped operator", `echo \;`, []string{"echo", ";"}, nil},
	{"hash inside a word", `echo a#b`, []string{"echo", "a#b"}, nil},
	{"glob and tilde literal", `ls * ~/x`, []string{"ls", "*", "~/x"}, nil},
	{"equals after the program", `/server --port=8080 A=1`, []string{"/server", "--port=8080", "A=1"}, nil},
	{"quoted assignment is a program", `'A=1' x`, []string{"A=1", "x"}, nil},
	{"empty", "", nil, ErrEmpty},
	{"only blanks", " \t\n", nil, ErrEmpty},
	{"only a continuation", "\\\n", nil, ErrEmpty},
	{"unterminated single", `echo 'a`, nil, ErrUnterminated},
	{"unterminated double", `echo "a\"`, nil, ErrUnterminated},
	{"trailing backslash", `echo a\`, nil, ErrUnterminated},
	{"pipe", `a | b`, nil, ErrShellSyntax},
	{"and", `a && b`, nil, ErrShellSyntax},
	{"semicolon", `a; b`, nil, ErrShellSyntax},
	{"redirect", `a > /dev/null`, nil, ErrShellSyntax},
	{"input redirect", `a </dev/null`, nil, ErrShellSyntax},
	{"subshell", `(a)`, nil, ErrShellSyntax},
	{"command substitution", "echo $(date)", nil, ErrShellSyntax},
	{"backticks", "echo `date`", nil, ErrShellSyntax},
	{"comment", `/server # the web server`, nil, ErrShellSyntax},
	{"assignment", `PORT=5000 /server`, nil, ErrShellSyntax},
	{"NUL", "a\x00b", nil, ErrNUL},
}

func TestSplit(t *testing.T) {
	for _, tt := range splitTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Split(tt.cmd)
			if tt.err != nil {
				var e *Error
				if !errors.Is(err, tt.err) || !errors.As(err, &e) {
					t.Fatalf("Split(%q) = %q, %v; want %v", tt.cmd, got, err, tt.err)
				}
				if e.Pos < 0 || e.Pos > len(tt.cmd) {
					t.Errorf("position %d outside the command", e.Pos)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%q): %v", tt.cmd, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Split(%q) = %q, want %q", tt.cmd, got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Split(`web 'x`)
	if got := err.Error(); got != "unterminated quoting at byte 4: single quote not closed" {
		t.Errorf("message %q", got)
	}
	_, err = Split(`DEBUG=1 web`)
	if got := err.Error(); !strings.Contains(got, "at byte 0: the assignment DEBUG=... runs only in a shell") {
		t.Errorf("message %q", got)
	}
}

// TestAgreesWithShell runs the accepted commands through /bin/sh, with
// globbing off and without any $ or ~ to expand, and checks that the shell
// finds the same words.
func TestAgreesWithShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh to compare with: %v", err)
	}
	for _, tt := range splitTests {
		// An unquoted newline ends a shell command; Split takes it for a
		// blank.
		if tt.err != nil || strings.ContainsAny(strings.ReplaceAll(tt.cmd, "\\\n", ""), "$~\n") {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), sh, "-c", "set -f; printf '%s\\0' "+tt.cmd).Output()
			if err != nil {
				t.Fatalf("sh: %v", err)
			}
			shWords := strings.Split(string(out), "\x00")
			shWords = shWords[:len(shWords)-1]
			if !slices.Equal(shWords, tt.want) {
				t.Errorf("sh splits %q into %q, Split into %q", tt.cmd, shWords, tt.want)
			}
		})
	}
}

// quote quotes words so that a shell (and Split) reads them back.
func quote(words []string) string {
	var b bytes.Buffer
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(w, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

func FuzzSplit(f *testing.F) {
	for _, tt := range splitTests {
		f.Add(tt.cmd)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		words, err := Split(cmd)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Pos < 0 || e.Pos > len(cmd) {
				t.Fatalf("Split(%q): error %v without a position in the command", cmd, err)
			}
			for _, sentinel := range []error{ErrEmpty, ErrUnterminated, ErrShellSyntax, ErrNUL} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("Split(%q): error %v wraps no sentinel", cmd, err)
		}
		if len(words) == 0 {
			t.Fatalf("Split(%q) accepted no words", cmd)
		}
		// Quoting the words and splitting again gives them back.
		again, err := Split(quote(words))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("Split(quote(%q)) = %q, %v", words, again, err)
		}
		// Unquoted blanks never end up inside a word: a command without
		// quotes or backslashes splits at its blanks.
		if !strings.ContainsAny(cmd, `'"\`) {
			fields := strings.FieldsFunc(cmd, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
			if !slices.Equal(words, fields) {
				t.Fatalf("Split(%q) = %q, want the fields %q", cmd, words, fields)
			}
		}
	})
}

// TestJoin checks that Split reads back what Join quotes, bare words
// unquoted.
func TestJoin(t *testing.T) {
	tests := []struct {
		words []string
		want  string
	}{
		{[]string{"gantryd", "router", "--data", "/var/lib/gantry"}, "gantryd router --data /var/lib/gantry"},
		{[]string{"gantryd", "--data", "/my data", "it's", ""}, `gantryd --data '/my data' 'it'\''s' ''`},
		{[]string{"FOO=1", "x=y"}, "'FOO=1' x=y"},
		{[]string{"a|b", "$PORT", "~", "#x"}, `'a|b' '$PORT' '~' '#x'`},
	}
	for _, tt := range tests {
		got := Join(tt.words)
		if got != tt.want {
			t.Errorf("Join(%q) = %s, want %s", tt.words, got, tt.want)
		}
		back, err := Split(got)
		if err != nil || !slices.Equal(back, tt.words) {
			t.Errorf("Split(Join(%q)) = %q, %v", tt.words, back, err)
		}
	}
	for _, tt := range splitTests {
		if tt.err != nil || len(tt.want) == 0 {
			continue
		}
		if back, err := Split(Join(tt.want)); err != nil || !slices.Equal(back, tt.want) {
			t.Errorf("Split(Join(%q)) = %q, %v", tt.want, back, err)
		}
	}
}
