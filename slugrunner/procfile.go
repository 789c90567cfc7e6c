package slugrunner

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// procfileLine is the grammar of one process type line.
var procfileLine = regexp.MustCompile(`^([A-Za-z0-9_-]+):\s*(.+)$`)

// processType is the rule for process type names, the same as the
// controller's (a type the controller would refuse fails the build, not the
// release).
var processType = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,29}$`)

// maxProcfileLine bounds the length of one Procfile line in bytes.
const maxProcfileLine = 64 << 10

// Limits of a Procfile (docs/API.md lists them).
const (
	// MaxProcfileSize is the largest Procfile, in bytes.
	MaxProcfileSize = 64 << 10
	// MaxProcessTypes is the most process types a Procfile may declare.
	MaxProcessTypes = 100
)

// ProcfileError is the error for a malformed Procfile line.
type ProcfileError struct {
	Line int    // 1-based line number
	Msg  string // what is wrong with it
}

func (e *ProcfileError) Error() string {
	return fmt.Sprintf("%v: line %d: %s", ErrProcfile, e.Line, e.Msg)
}

// Unwrap returns ErrProcfile.
func (e *ProcfileError) Unwrap() error { return ErrProcfile }

// ParseProcfile reads a Procfile and returns its commands by process type.
//
// Each line is either blank, a comment (its first non-blank character is
// '#'), or `type: command` where type (1 to 30 lowercase letters, digits, dashes
// and underscores, starting with a letter) starts the line, and the command is not empty. A trailing CR is ignored. A
// malformed line, a type defined twice or a line longer than 64 KiB is a
// *ProcfileError naming the line; so is a Procfile larger than
// MaxProcfileSize or with more than MaxProcessTypes types. A Procfile
// without types yields an empty map.
func ParseProcfile(r io.Reader) (map[string]string, error) {
	types := map[string]string{}
	lines := map[string]int{}
	// One byte more than the limit tells a Procfile at the limit from a
	// larger one.
	lr := &io.LimitedReader{R: r, N: MaxProcfileSize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), maxProcfileLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		m := procfileLine.FindStringSubmatch(line)
		if m == nil {
			return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("%q is not of the form \"type: command\"", line)}
		}
		name, command := m[1], strings.TrimSpace(m[2])
		if !processType.MatchString(name) {
			return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("invalid process type %q: use 1 to 30 lowercase letters, digits, dashes and underscores, starting with a letter", name)}
		}
		if command == "" {
			return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("process type %q has an empty command", name)}
		}
		if strings.ContainsRune(command, 0) {
			return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("process type %q: command contains a NUL byte", name)}
		}
		if first, ok := lines[name]; ok {
			return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("process type %q is already defined on line %d", name, first)}
		}
		if len(types) == MaxProcessTypes {
			return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("more than %d process types (%q is one too many)", MaxProcessTypes, name)}
		}
		types[name] = command
		lines[name] = n
	}
	if lr.N <= 0 {
		return nil, &ProcfileError{Line: n, Msg: fmt.Sprintf("the Procfile is larger than %d bytes", MaxProcfileSize)}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ProcfileError{Line: n + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxProcfileLine)}
		}
		return nil, fmt.Errorf("read Procfile: %w", err)
	}
	return types, nil
}
