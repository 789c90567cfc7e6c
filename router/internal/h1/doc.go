// Package h1 is the router's HTTP/1.1 engine: its server (Server, used on
// both of the router's listeners), the one parser of request heads and of
// backend response heads, the rules every request follows whatever
// protocol brought it (CheckRequest, for the requests net/http's HTTP/2
// server parsed), and raw socket I/O.
//
// Header field lines are parsed by one function, nextField, for requests
// and responses alike: a token name, a colon, a value without control
// characters; obs-fold and a space before the colon are refused, which
// closes the usual request smuggling and response splitting gaps. The
// request parser adds the framing rules: no Content-Length with
// Transfer-Encoding, no differing Content-Lengths, chunked as the only
// coding, one Host, and at most MaxHeaderFields field lines, every
// repeated name counted.
package h1
