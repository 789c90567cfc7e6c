// Package types holds the wire types of the log aggregator's API (see
// docs/API.md): the lines that are shipped to it and that it answers with.
package types

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sources of a line, in Line.Source.
const (
	// SourceApp is the output of an app's process (stdout and stderr).
	SourceApp = "app"
	// SourceRouter is the router's access line of a request to the app.
	SourceRouter = "router"
	// SourceGantry is a platform event: a deploy, a scale, a crash, a
	// restart.
	SourceGantry = "gantry"
)

// Limits of one line.
const (
	// MaxMsg is the longest Msg, in bytes. The host agent splits longer
	// output lines at this size.
	MaxMsg = 16 << 10
	// MaxWireLine is the longest line of NDJSON the aggregator reads: a
	// Line whose Msg is MaxMsg bytes of characters JSON must escape still
	// fits.
	MaxWireLine = 8*MaxMsg + 1024
)

// ErrInvalidLine is wrapped by the errors of Line.Validate.
var ErrInvalidLine = errors.New("invalid log line")

// Line is one line of an app's log.
type Line struct {
	// App is the app's name; required.
	App string `json:"app"`
	// Source is SourceApp, SourceRouter or SourceGantry; required.
	Source string `json:"source"`
	// Type is the process type of the job the line is about ("web");
	// empty for router lines and for app-wide events.
	Type string `json:"type,omitempty"`
	// Job is the ID of the job the line is about; empty when none.
	Job string `json:"job,omitempty"`
	// Index is the job's number among its type's jobs (web.1 is 1); zero
	// when unknown or not about a job.
	Index int `json:"index,omitempty"`
	// Time is when the line was written (for app output, when Docker read
	// it); required. Lines are kept and answered in time order.
	Time time.Time `json:"time"`
	// Msg is the text, without a line break, at most MaxMsg bytes.
	Msg string `json:"msg"`
}

// Process names the job of a line the way the log shows it: "web.1",
// "web" when the index is unknown, "" when the line is about no process.
func (l Line) Process() string {
	switch {
	case l.Type == "":
		return ""
	case l.Index > 0:
		return l.Type + "." + strconv.Itoa(l.Index)
	}
	return l.Type
}

// Validate returns an error wrapping ErrInvalidLine that names the first
// problem of l.
func (l Line) Validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidLine, fmt.Sprintf(format, args...))
	}
	switch {
	case !ValidApp(l.App):
		return invalid("app %q: want 2 to 30 lower-case letters, digits and dashes, starting with a letter", l.App)
	case l.Source != SourceApp && l.Source != SourceRouter && l.Source != SourceGantry:
		return invalid("source %q: want %q, %q or %q", l.Source, SourceApp, SourceRouter, SourceGantry)
	case l.Type != "" && !ValidType(l.Type):
		return invalid("type %q: want 1 to 30 lower-case letters, digits, dashes and underscores, starting with a letter", l.Type)
	case l.Job != "" && !ValidJob(l.Job):
		return invalid("job %q: want 1 to 128 letters, digits, dots, dashes and underscores", l.Job)
	case l.Index < 0:
		return invalid("index %d: want zero or more", l.Index)
	case l.Time.IsZero():
		return invalid("time is missing")
	case len(l.Msg) > MaxMsg:
		return invalid("msg is %d bytes, longer than %d", len(l.Msg), MaxMsg)
	case strings.ContainsAny(l.Msg, "\n\r"):
		return invalid("msg holds a line break; send one line per line")
	case !utf8.ValidString(l.Msg):
		return invalid("msg is not valid UTF-8")
	}
	return nil
}

// ValidApp reports whether s is an app name: 2 to 30 lower-case letters,
// digits and dashes, starting with a letter.
func ValidApp(s string) bool { return validApp(s) }

func validApp[T string | []byte](s T) bool {
	if len(s) < 2 || len(s) > 30 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidType reports whether s is a process type: 1 to 30 lower-case
// letters, digits, dashes and underscores, starting with a letter.
func ValidType(s string) bool { return validType(s) }

func validType[T string | []byte](s T) bool {
	if len(s) < 1 || len(s) > 30 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidJob reports whether s can be a job ID: 1 to 128 letters, digits,
// dots, dashes and underscores.
func ValidJob(s string) bool { return validJob(s) }

func validJob[T string | []byte](s T) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Query selects lines of one app's log (GET /v1/apps/{app}/log).
type Query struct {
	// Lines is how many of the newest matching lines to answer first;
	// zero answers none (useful with Follow).
	Lines int
	// Follow keeps the answer open and sends matching lines as they come.
	Follow bool
	// Type keeps only the lines about jobs of this process type; empty
	// keeps all.
	Type string
	// Job keeps only the lines about this job, named by its ID or as
	// "web.1"; empty keeps all.
	Job string
	// Since keeps only the lines written at or after it; zero keeps all.
	Since time.Time
}

// Match reports whether l passes q's filters (Type, Job and Since).
func (q Query) Match(l Line) bool {
	if q.Type != "" && l.Type != q.Type {
		return false
	}
	if q.Job != "" && l.Job != q.Job && (l.Index == 0 || l.Process() != q.Job) {
		return false
	}
	return q.Since.IsZero() || !l.Time.Before(q.Since)
}

// DefaultLines is Query.Lines when the query does not say.
const DefaultLines = 100

// ParseQuery reads a Query from the parameters of GET
// /v1/apps/{app}/log: lines (default DefaultLines, at most maxLines: more
// is cut to it), follow (1, true, 0 or false), type, job and since
// (RFC 3339). Other parameters are ignored. The error names the bad
// parameter.
func ParseQuery(v url.Values, maxLines int) (Query, error) {
	get := v.Get
	q := Query{Lines: DefaultLines, Type: get("type"), Job: get("job")}
	if s := get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return Query{}, fmt.Errorf("lines=%q: want a whole number, 0 or more", s)
		}
		q.Lines = n
	}
	q.Lines = min(q.Lines, maxLines)
	switch s := get("follow"); s {
	case "", "0", "false":
	case "1", "true":
		q.Follow = true
	default:
		return Query{}, fmt.Errorf("follow=%q: want 1 or 0", s)
	}
	if q.Type != "" && !ValidType(q.Type) {
		return Query{}, fmt.Errorf("type=%q: want a process type such as web", q.Type)
	}
	if q.Job != "" && !ValidJob(q.Job) {
		return Query{}, fmt.Errorf("job=%q: want a job ID or a process such as web.1", q.Job)
	}
	if s := get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Query{}, fmt.Errorf("since=%q: want an RFC 3339 time such as 2026-11-24T22:41:03Z", s)
		}
		q.Since = t
	}
	return q, nil
}

// Values returns q as the parameters ParseQuery reads.
func (q Query) Values() url.Values {
	v := url.Values{"lines": {strconv.Itoa(q.Lines)}}
	if q.Follow {
		v["follow"] = []string{"1"}
	}
	if q.Type != "" {
		v["type"] = []string{q.Type}
	}
	if q.Job != "" {
		v["job"] = []string{q.Job}
	}
	if !q.Since.IsZero() {
		v["since"] = []string{q.Since.UTC().Format(time.RFC3339Nano)}
	}
	return v
}

// CleanMsg makes s a valid Msg: carriage returns and line breaks become
// spaces, invalid UTF-8 is replaced, and the text is cut to MaxMsg bytes
// on a character boundary.
func CleanMsg(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = msgBreaks.Replace(s)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > MaxMsg {
		cut := MaxMsg
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

var msgBreaks = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")
