package slugbuilder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// errReleaseYAML is wrapped by every error of parseReleaseYAML.
var errReleaseYAML = errors.New("bad bin/release output")

// parseReleaseYAML returns the default_process_types of a buildpack's
// bin/release output. It reads the small subset of YAML that release output
// uses, by hand:
//
//	---
//	addons: []
//	config_vars:
//	  KEY: value
//	default_process_types:
//	  web: bin/server --port $PORT
//	  worker: "bin/worker # quoted, so not a comment"
//
// Top-level keys other than default_process_types are skipped with
// everything indented under them. Under default_process_types each line is
// "<type>: <command>" at one indentation; a command is a plain scalar (a
// " #" starts a comment), a 'single-quoted' or a "double-quoted" one (with
// the usual backslash escapes). "{}", "~", "null" or nothing after the key
// mean no process types. Flow mappings, block scalars, anchors and tags are
// errors, as are tabs in indentation, duplicate types and invalid UTF-8.
func parseReleaseYAML(data []byte) (map[string]string, error) {
	types, err := parseRelease(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errReleaseYAML, err)
	}
	return types, nil
}

func parseRelease(data []byte) (map[string]string, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not UTF-8")
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	types := map[string]string{}
	var (
		seen     bool // default_process_types was found
		inTypes  bool // reading the lines under it
		inOther  bool // skipping the lines under another key
		typesInd int  // indentation of the process type lines
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		body := strings.TrimLeft(line, " ")
		ind := len(line) - len(body)
		if body == "" || body[0] == '#' {
			continue
		}
		if strings.HasPrefix(body, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", n)
		}
		if ind == 0 {
			inTypes, inOther = false, false
			if line == "---" || strings.HasPrefix(line, "--- ") || line == "..." {
				continue
			}
			key, rest, err := splitKey(body)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if key != "default_process_types" {
				inOther = true
				continue
			}
			if seen {
				return nil, fmt.Errorf("line %d: default_process_types given twice", n)
			}
			seen = true
			switch v := strings.TrimSpace(stripComment(rest)); v {
			case "", "{}", "~", "null":
				inTypes = v == "" // a block mapping follows
			default:
				return nil, fmt.Errorf("line %d: default_process_types must be a block mapping", n)
			}
			continue
		}
		switch {
		case inOther:
			continue
		case !inTypes:
			return nil, fmt.Errorf("line %d: unexpected indentation", n)
		}
		if typesInd == 0 {
			typesInd = ind
		}
		if ind != typesInd {
			return nil, fmt.Errorf("line %d: indentation %d, want %d like the process types above", n, ind, typesInd)
		}
		key, rest, err := splitKey(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !validTypeName(key) {
			return nil, fmt.Errorf("line %d: %q is not a process type name (letters, digits, '-' and '_')", n, key)
		}
		if _, dup := types[key]; dup {
			return nil, fmt.Errorf("line %d: process type %q given twice", n, key)
		}
		cmd, err := parseScalar(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: process type %q: %w", n, key, err)
		}
		if cmd == "" {
			return nil, fmt.Errorf("line %d: process type %q has no command", n, key)
		}
		types[key] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return types, nil
}

// splitKey splits "key: rest" (or "key:") into the key, plain or quoted,
// and what follows the colon.
func splitKey(s string) (key, rest string, err error) {
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		key, after, err := quoted(s)
		if err != nil {
			return "", "", err
		}
		if !strings.HasPrefix(after, ":") {
			return "", "", fmt.Errorf("want ':' after key %q", key)
		}
		after = after[1:]
		if after != "" && after[0] != ' ' {
			return "", "", fmt.Errorf("want a space after key %q", key)
		}
		return key, after, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] == ':' && (i+1 == len(s) || s[i+1] == ' ') {
			key = strings.TrimRight(s[:i], " ")
			if key == "" {
				return "", "", errors.New("empty key")
			}
			if strings.ContainsAny(key[:1], "-?[]{}&*!|>%@`,") {
				return "", "", fmt.Errorf("unsupported YAML key %q", key)
			}
			return key, s[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("want 'key: value', got %q", s)
}

// parseScalar reads the value after a key: quoted, or plain up to a comment.
func parseScalar(s string) (string, error) {
	s = strings.TrimLeft(s, " ")
	if s == "" {
		return "", nil
	}
	switch s[0] {
	case '"', '\'':
		v, after, err := quoted(s)
		if err != nil {
			return "", err
		}
		if rest := strings.TrimSpace(after); rest != "" && rest[0] != '#' {
			return "", fmt.Errorf("unexpected %q after the quoted value", rest)
		}
		if after != "" && after[0] == '#' {
			return "", errors.New("a comment must follow a space")
		}
		return v, nil
	case '[', '{', '|', '>', '&', '*', '!', '%', '@', '`':
		return "", fmt.Errorf("unsupported YAML value starting with %q (quote the command)", s[:1])
	}
	v := strings.TrimRight(stripComment(s), " ")
	if v == "~" || v == "null" {
		return "", nil
	}
	return v, nil
}

// stripComment cuts a plain scalar at " #".
func stripComment(s string) string {
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.Index(s, " #"); i >= 0 {
		return s[:i]
	}
	return s
}

// quoted reads a single- or double-quoted scalar at the start of s and
// returns it and what follows the closing quote.
func quoted(s string) (string, string, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case q == '\'' && c == '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i += 2
				continue
			}
			return b.String(), s[i+1:], nil
		case q == '"' && c == '"':
			return b.String(), s[i+1:], nil
		case q == '"' && c == '\\':
			r, width, err := unescape(s[i+1:])
			if err != nil {
				return "", "", err
			}
			b.WriteString(r)
			i += 1 + width
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", "", errors.New("unterminated quoted value")
}

// unescape decodes the escape after a backslash in a double-quoted scalar
// and returns it and the number of bytes it used.
func unescape(s string) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("backslash at the end of a quoted value")
	}
	if r, ok := simpleEscapes[s[0]]; ok {
		return r, 1, nil
	}
	digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[s[0]]
	if digits == 0 {
		return "", 0, fmt.Errorf("unknown escape \\%c", s[0])
	}
	if len(s) < 1+digits {
		return "", 0, fmt.Errorf("short escape \\%s", s)
	}
	v, err := strconv.ParseUint(s[1:1+digits], 16, 32)
	if err != nil || v > utf8.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
		return "", 0, fmt.Errorf("bad escape \\%s", s[:1+digits])
	}
	return string(rune(v)), 1 + digits, nil
}

// simpleEscapes are the one-character escapes of double-quoted YAML.
var simpleEscapes = map[byte]string{
	'0': "\x00", 'a': "\a", 'b': "\b", 't': "\t", '\t': "\t", 'n': "\n",
	'v': "\v", 'f': "\f", 'r': "\r", 'e': "\x1b", ' ': " ", '"': "\"",
	'/': "/", '\\': "\\", 'N': "\u0085", '_': "\u00a0", 'L': "\u2028", 'P': "\u2029",
}

// validTypeName reports whether name can be a process type.
func validTypeName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
