package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// validateProcessType reports whether name is a valid process type.
func validateProcessType(name string) error {
	if name == "" {
		return fmt.Errorf("the process type is empty")
	}
	if !types.ProcessTypeRegexp.MatchString(name) {
		return fmt.Errorf("%q is not a valid process type (lower-case letters, digits, '-' and '_', starting with a letter, at most 30)", name)
	}
	return nil
}

// cutProcessArg splits a TYPE=VALUE argument at its first '=' and checks
// the type; want names the expected form in errors ("TYPE=N").
func cutProcessArg(arg, want string) (typ, value string, err error) {
	typ, value, found := strings.Cut(arg, "=")
	if !found {
		return "", "", fmt.Errorf("invalid argument %q: expected %s", arg, want)
	}
	if err := validateProcessType(typ); err != nil {
		return "", "", fmt.Errorf("invalid argument %q: %w", arg, err)
	}
	return typ, value, nil
}

// parseCount parses a TYPE=N argument of gantry scale: N is a non-negative
// decimal integer (no sign, no spaces). Errors name the argument.
func parseCount(arg string) (typ string, n int, err error) {
	typ, value, err := cutProcessArg(arg, "TYPE=N (e.g. web=2)")
	if err != nil {
		return "", 0, err
	}
	if value == "" || strings.TrimLeft(value, "0123456789") != "" {
		return "", 0, fmt.Errorf("invalid argument %q: the count %q is not a non-negative integer", arg, value)
	}
	n, err = strconv.Atoi(value)
	if err != nil {
		return "", 0, fmt.Errorf("invalid argument %q: the count %s is too large", arg, value)
	}
	return typ, n, nil
}

// parseCounts parses the TYPE=N arguments of gantry scale; a type may be
// named once.
func parseCounts(args []string) (map[string]int, error) {
	counts := make(map[string]int, len(args))
	for _, arg := range args {
		typ, n, err := parseCount(arg)
		if err != nil {
			return nil, err
		}
		if _, dup := counts[typ]; dup {
			return nil, fmt.Errorf("invalid argument %q: %s is named twice", arg, typ)
		}
		counts[typ] = n
	}
	return counts, nil
}

// parseCommand parses a TYPE=CMD value of --process: CMD is everything
// after the first '=' (it may hold '=' itself), without surrounding space,
// and must not be empty.
func parseCommand(arg string) (typ, cmd string, err error) {
	typ, cmd, err = cutProcessArg(arg, "TYPE=COMMAND (e.g. web='/server -port $PORT')")
	if err != nil {
		return "", "", err
	}
	cmd = strings.TrimSpace(cmd)
	if cmd == "" {
		return "", "", fmt.Errorf("invalid argument %q: the command of %s is empty", arg, typ)
	}
	if strings.ContainsRune(cmd, 0) {
		return "", "", fmt.Errorf("invalid argument %q: the command of %s holds a NUL byte", arg, typ)
	}
	return typ, cmd, nil
}

// parseHealthPath parses a TYPE=/PATH value of --health: PATH starts with
// '/' and holds no space or control character.
func parseHealthPath(arg string) (typ, path string, err error) {
	typ, path, err = cutProcessArg(arg, "TYPE=/PATH (e.g. web=/healthz)")
	if err != nil {
		return "", "", err
	}
	if !strings.HasPrefix(path, "/") {
		return "", "", fmt.Errorf("invalid argument %q: the health check path %q does not start with /", arg, path)
	}
	if i := strings.IndexFunc(path, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return "", "", fmt.Errorf("invalid argument %q: the health check path holds a space or control character", arg)
	}
	return typ, path, nil
}

// formatCounts prints counts as "web=3 worker=1", sorted by type.
func formatCounts(counts map[string]int) string {
	parts := make([]string, 0, len(counts))
	for _, t := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", t, counts[t]))
	}
	return strings.Join(parts, " ")
}
