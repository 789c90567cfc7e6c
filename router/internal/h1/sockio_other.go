//go:build !linux

package h1

import (
	"io"
	"net"
)

// SocketIO returns c: only the Linux build reads and writes sockets with
// raw system calls (see sockio_linux.go).
func SocketIO(c net.Conn) io.ReadWriter { return c }

// peekOpen reports the socket fd as open: only the Linux build can check
// without blocking, so elsewhere a client that leaves is noticed when its
// response is written.
func peekOpen(fd uintptr) bool { return true }
