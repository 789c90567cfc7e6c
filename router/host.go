package router

import "strings"

// parseHost turns a Host header (or a TLS server name) into the name routes
// are keyed by: the port is dropped, ASCII letters are lower-cased and one
// trailing dot is removed. An IPv6 literal keeps its brackets ("[::1]"), so
// the result is itself a valid Host. It reports false for a value that
// cannot be a host: empty, a malformed port or bracket, a leading or doubled
// dot, a control character, a space or one of "/?#@\[]". It does not
// allocate when the name is already in its normal form.
func parseHost(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 2 || !validPort(s[end+1:]) {
			return "", false
		}
		host := s[:end+1]
		upper := false
		for i := 1; i < end; i++ {
			switch c := host[i]; {
			case '0' <= c && c <= '9', 'a' <= c && c <= 'f', c == ':', c == '.':
			case 'A' <= c && c <= 'F':
				upper = true
			default:
				return "", false
			}
		}
		if upper {
			host = lower(host)
		}
		return host, true
	}
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if strings.IndexByte(s[:i], ':') >= 0 {
			return "", false // a bare IPv6 literal or garbage
		}
		host = s[:i]
		if !validPort(s[i:]) {
			return "", false
		}
	}
	if strings.Contains(host, "..") {
		return "", false
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if host == "" || len(host) > 253 || host[0] == '.' {
		return "", false
	}
	upper := false
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c <= ' ' || c >= 0x7f, c == '/', c == '?', c == '#', c == '@', c == '\\', c == '[', c == ']':
			return "", false
		case c == '*':
			// A wildcard belongs in routes, never in a request: a literal
			// "*.example.com" must not match the route of that name.
			return "", false
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if upper {
		host = lower(host)
	}
	return host, true
}

// validPort reports whether p is empty, a lone ":" (RFC 3986 allows an
// empty port) or ":" followed by 1 to 5 digits.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if p[0] != ':' {
		return false
	}
	p = p[1:]
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// wildcardParent returns the part of host after its first label ("b.c" for
// "a.b.c"), the key of the wildcard route "*.b.c" that matches it.
func wildcardParent(host string) (string, bool) {
	i := strings.IndexByte(host, '.')
	if i <= 0 || i == len(host)-1 {
		return "", false
	}
	return host[i+1:], true
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
