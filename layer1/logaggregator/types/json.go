package types

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// errJSONYear is AppendJSON's error for a time encoding/json cannot
// encode either.
var errJSONYear = errors.New("log line: time year outside [0,9999]")

// AppendJSON appends l as json.Marshal encodes it, byte for byte (HTML
// characters escaped, empty type and job and a zero index left out), to
// b, without reflection or allocation. Like json.Marshal it fails for a
// time whose year is outside [0,9999].
func AppendJSON(b []byte, l Line) ([]byte, error) {
	if y := l.Time.Year(); y < 0 || y > 9999 {
		return b, errJSONYear
	}
	b = append(b, `{"app":`...)
	b = appendJSONString(b, l.App)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, l.Source)
	if l.Type != "" {
		b = append(b, `,"type":`...)
		b = appendJSONString(b, l.Type)
	}
	if l.Job != "" {
		b = append(b, `,"job":`...)
		b = appendJSONString(b, l.Job)
	}
	if l.Index != 0 {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(l.Index), 10)
	}
	b = append(b, `,"time":"`...)
	b = appendTime(b, l.Time)
	b = append(b, `","msg":`...)
	b = appendJSONString(b, l.Msg)
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// jsonSecond is one second formatted as "2006-01-02T15:04:05", in UTC.
type jsonSecond struct {
	unix int64
	text string
}

// lastSecond is the second AppendJSON formatted last: the lines of a busy
// app mostly share it.
var lastSecond atomic.Pointer[jsonSecond]

// appendTime appends t as t.AppendFormat(b, time.RFC3339Nano) does, with
// the part up to the second of a UTC time formatted once per second.
func appendTime(b []byte, t time.Time) []byte {
	if t.Location() != time.UTC {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	sec := t.Unix()
	s := lastSecond.Load()
	if s == nil || s.unix != sec {
		s = &jsonSecond{unix: sec, text: t.Format("2006-01-02T15:04:05")}
		lastSecond.Store(s)
	}
	b = append(b, s.text...)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// jsonPlain marks the ASCII bytes encoding/json writes as they are, with
// HTML escaping on.
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json does with HTML
// escaping on.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
