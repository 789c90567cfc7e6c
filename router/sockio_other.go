//go:build !linux

package router

import (
	"io"
	"net"
)

// socketIO returns c: only the Linux build reads and writes sockets with
// raw system calls (see sockio_linux.go).
func socketIO(c net.Conn) io.ReadWriter { return c }
