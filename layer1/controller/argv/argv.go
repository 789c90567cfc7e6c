// Package argv splits a command line into the arguments of a program run
// without a shell, following the quoting rules of the POSIX shell.
//
// Blanks (space, tab, newline) separate words. A backslash outside quotes
// keeps the next character literally, and a backslash-newline disappears.
// Single quotes keep everything up to the next single quote literally.
// Double quotes keep everything literally except a backslash before $, `,
// ", \ or newline, which escapes it. Quotes can join several pieces into one
// word (a'b'"c" is abc), and an empty pair of quotes is an empty word.
//
// Nothing is expanded: "$PORT" stays "$PORT", and ~ and * are plain
// characters. Syntax that only a shell could run — the unquoted operators
// | & ; < > ( ) `, a comment (#), or an environment assignment before the
// program (FOO=1 ./server) — is refused with ErrShellSyntax rather than
// passed on as arguments; wrap such a command in sh -c '...' when the image
// has a shell.
package argv

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of Split; the *Error it returns wraps one of them.
var (
	// ErrEmpty means that the command holds no word.
	ErrEmpty = errors.New("empty command")
	// ErrUnterminated means that a quote is not closed, or that the
	// command ends with a backslash.
	ErrUnterminated = errors.New("unterminated quoting")
	// ErrShellSyntax means that the command needs a shell to run.
	ErrShellSyntax = errors.New("shell syntax")
	// ErrNUL means that the command contains a NUL byte, which no argument
	// can hold.
	ErrNUL = errors.New("NUL byte")
)

// Error is a command Split refuses: Err is one of the package's errors, Pos
// the byte offset in the command where the problem is.
type Error struct {
	Err    error
	Pos    int
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v at byte %d", e.Err, e.Pos)
	}
	return fmt.Sprintf("%v at byte %d: %s", e.Err, e.Pos, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// operators are the characters that start shell syntax when unquoted.
const operators = "|&;<>()`"

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

// Split returns the words of cmd. It fails with an *Error for an empty
// command, unterminated quoting, a NUL byte or shell syntax (see the package
// comment).
func Split(cmd string) ([]string, error) {
	if i := strings.IndexByte(cmd, 0); i >= 0 {
		return nil, &Error{Err: ErrNUL, Pos: i}
	}
	var (
		words  []string
		word   strings.Builder
		inWord bool // a word is started (possibly empty, as with '')
		// plain is true while every byte of the first word so far was
		// unquoted, to recognise an assignment "NAME=..." in it.
		plain = true
	)
	// quoted notes a quoted or escaped piece of the current word.
	quoted := func() {
		inWord = true
		if len(words) == 0 {
			plain = false
		}
	}
	end := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case isBlank(c):
			end()
		case c == '\\':
			if i+1 == len(cmd) {
				return nil, &Error{Err: ErrUnterminated, Pos: i, Detail: "the command ends with a backslash"}
			}
			i++
			if cmd[i] == '\n' { // line continuation
				continue
			}
			word.WriteByte(cmd[i])
			quoted()
		case c == '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, &Error{Err: ErrUnterminated, Pos: i, Detail: "single quote not closed"}
			}
			word.WriteString(cmd[i+1 : i+1+j])
			i += j + 1
			quoted()
		case c == '"':
			start := i
			closed := false
			for i++; i < len(cmd); i++ {
				d := cmd[i]
				if d == '"' {
					closed = true
					break
				}
				if d == '\\' && i+1 < len(cmd) && strings.IndexByte("$`\"\\\n", cmd[i+1]) >= 0 {
					i++
					if cmd[i] != '\n' {
						word.WriteByte(cmd[i])
					}
					continue
				}
				word.WriteByte(d)
			}
			if !closed {
				return nil, &Error{Err: ErrUnterminated, Pos: start, Detail: "double quote not closed"}
			}
			quoted()
		case strings.IndexByte(operators, c) >= 0:
			return nil, &Error{Err: ErrShellSyntax, Pos: i, Detail: fmt.Sprintf("%q runs only in a shell", c)}
		case c == '#' && !inWord:
			return nil, &Error{Err: ErrShellSyntax, Pos: i, Detail: "a comment runs only in a shell"}
		case c == '=' && len(words) == 0 && plain && isName(word.String()):
			return nil, &Error{Err: ErrShellSyntax, Pos: i - word.Len(),
				Detail: fmt.Sprintf("the assignment %s=... runs only in a shell; set a config var instead", word.String())}
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	end()
	if len(words) == 0 {
		return nil, &Error{Err: ErrEmpty, Pos: 0, Detail: "no program to run"}
	}
	return words, nil
}

// isName reports whether s is a shell variable name.
func isName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Join is the inverse of Split: it quotes words into a command that Split
// (and a shell) reads back as the same words. Words of only letters,
// digits and @%+=:,./_- stay bare; the others are single-quoted. A first
// word with '=' is quoted too, so it is never taken for an assignment.
func Join(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" &&
			(i > 0 || !strings.Contains(w, "=")) {
			b.WriteString(w)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(w, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}
