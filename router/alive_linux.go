//go:build linux

package router

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func (c *upstreamConn) initAlive() { c.peekFn = c.peek }

// alive reports whether an idle connection can carry a request: the backend
// has neither closed it nor sent anything unasked. It peeks at the socket
// without blocking (one recvfrom with MSG_PEEK|MSG_DONTWAIT), so a connection
// the backend closed while idle is never written to.
func (c *upstreamConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	c.peekState = -1
	err := c.raw.Read(c.peekFn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The last request's read deadline (see cancelCheck) has passed
		// while the connection was idle.
		c.readBy(time.Time{}, 0)
		err = c.raw.Read(c.peekFn)
	}
	return err == nil && c.peekState == 0
}

// peek sets peekState to 0 when the socket is open with nothing to read, to
// 1 when bytes are waiting, and to -1 on EOF or an error.
func (c *upstreamConn) peek(fd uintptr) bool {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN:
		c.peekState = 0
	case errno != 0 || n == 0:
		c.peekState = -1
	default:
		c.peekState = 1
	}
	return true
}
