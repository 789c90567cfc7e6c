//go:build linux

package h1

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sockIO reads and writes a socket with raw system calls through its
// syscall.RawConn, which keeps Go's poller for waiting and deadlines.
//
// Go's sockets are non-blocking, so a read or write returns at once, with
// EAGAIN when it would block (then the poller waits). The calls are made
// without the runtime's syscall bookkeeping (entersyscall/exitsyscall):
// that bookkeeping is for calls that may block, and on a busy proxy it
// costs more than the calls themselves: a loopback write that delivers a
// response to its reader takes long enough for the runtime's monitor
// thread to hand the goroutine's processor to another thread, and the
// monitor keeps waking up every 20 µs to do so. The callbacks are bound
// once, so a call allocates nothing.
//
// A read and a write may run at the same time (a request body streams
// while the response is read); each has its own fields.
type sockIO struct {
	rc syscall.RawConn

	rbuf   []byte
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wbuf    []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool
}

// SocketIO returns the reader and writer of c: a sockIO when c is a
// socket, c itself otherwise.
func SocketIO(c net.Conn) io.ReadWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sockIO{rc: rc}
	s.readFn = s.doRead
	s.writeFn = s.doWrite
	return s
}

// Read reads once, as net.Conn's Read does.
func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err != nil {
		return 0, err
	}
	return s.rn, s.rerr
}

func (s *sockIO) doRead(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch errno {
		case 0:
			s.rn = int(n)
			if n == 0 {
				s.rerr = io.EOF
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rerr = os.NewSyscallError("read", errno)
		return true
	}
}

// Write writes all of p, as net.Conn's Write does.
func (s *sockIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	s.wbuf = nil
	if err == nil {
		err = s.werr
	}
	return s.wn, err
}

func (s *sockIO) doWrite(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		rest := s.wbuf[s.wn:]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch errno {
		case 0:
			s.wn += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits until the socket takes more
		}
		s.werr = os.NewSyscallError("write", errno)
		return true
	}
	return true
}

// peekOpen reports whether the socket fd is open: neither closed by the
// peer (EOF, even behind bytes not read yet) nor failed. Bytes waiting to
// be read with the peer's side still open (a pipelined request) count as
// open. It does not block and consumes nothing.
func peekOpen(fd uintptr) bool {
	var b [1]byte
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return true
	case errno != 0 || n == 0:
		return false
	}
	// Bytes are waiting, and the peer may have closed after sending them:
	// a TLS client that leaves sends its close_notify alert first.
	return !peerClosed(fd)
}

// tcpCloseWait and the states after it are those of a TCP socket whose
// peer has closed its side (include/net/tcp_states.h).
const (
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
)

// peerClosed reports whether the peer of the TCP socket fd has closed its
// side of the connection, from the state in TCP_INFO.
func peerClosed(fd uintptr) bool {
	var info [8]byte // tcpi_state is the first byte; the kernel copies what fits
	size := uint32(len(info))
	_, _, errno := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 || size < 1 {
		return false
	}
	switch info[0] {
	case tcpClose, tcpCloseWait, tcpLastAck:
		return true
	}
	return false
}
