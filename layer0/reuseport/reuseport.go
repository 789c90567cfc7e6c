// Package reuseport binds TCP listeners with SO_REUSEPORT, so that the
// new job of a platform role on the host's network can listen on the
// port of the old one while a deployment replaces it: the kernel spreads
// new connections over both until the old one closes its listener.
package reuseport

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen listens on the TCP address addr, with SO_REUSEPORT set when
// reuse is true (only processes of the same user share the port), else as
// net.Listen does.
func Listen(ctx context.Context, addr string, reuse bool) (net.Listener, error) {
	if !reuse {
		var lc net.ListenConfig
		return lc.Listen(ctx, "tcp", addr)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_REUSEPORT: %w", serr)
		}
		return nil
	}}
	return lc.Listen(ctx, "tcp", addr)
}
