package h1

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// HasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitively).
func HasToken(v, tok string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// errBadField is a header field line that is not a token, a colon and a
// value without control characters.
var errBadField = errors.New("malformed header field line")

// nextField parses the first line of lines, the header section of a head
// (or a trailer section): it returns the field's canonical name, its value
// without the whitespace around it, and the lines after it. done is set at
// the empty line that ends the section, or at its end. It is the one
// parser of header field lines, for requests and responses alike; a line
// that is not a token, a colon and a value without control characters
// other than tab is errBadField, which refuses obs-fold (a line starting
// with whitespace) and whitespace before the colon.
func nextField(lines string) (key, val, rest string, done bool, err error) {
	line, rest, _ := strings.Cut(lines, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", "", rest, true, nil
	}
	colon := strings.IndexByte(line, ':')
	if colon <= 0 || !validToken(line[:colon]) {
		return "", "", "", false, fmt.Errorf("%w: %q", errBadField, truncate(line))
	}
	val = trimOWS(line[colon+1:])
	if !validFieldValue(val) {
		return "", "", "", false, fmt.Errorf("%w: %q", errBadField, truncate(line))
	}
	return canonicalKey(line[:colon]), val, rest, false, nil
}

// discardPool holds the buffers request bodies are read and dropped
// through.
var discardPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// tooBusyResponse is what an HTTP connection beyond the cap gets before it
// is closed.
const tooBusyResponse = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nRetry-After: 1\r\nContent-Length: 20\r\n\r\nrouter at capacity.\n"

// refuse answers a connection beyond the Limiter's cap and closes it: HTTP gets a
// 503 written without waiting (a new socket's send buffer takes it),
// HTTPS nothing, since a response would need a handshake first.
func refuse(nc net.Conn, plain bool) {
	if plain {
		nc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		nc.Write([]byte(tooBusyResponse))
	}
	nc.Close()
}
