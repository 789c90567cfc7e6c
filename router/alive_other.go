//go:build !linux

package router

// alive reports whether an idle connection can carry a request. Only the
// Linux build can check the socket without blocking; elsewhere it only looks
// at unread buffered bytes, and a connection the backend closed while idle
// is found when the request is written or read, where the retry rule of
// forward applies.
func (c *upstreamConn) alive() bool { return c.br.Buffered() == 0 }

func (c *upstreamConn) initAlive() {}
