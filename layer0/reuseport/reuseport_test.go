package reuseport

import (
	"net"
	"testing"
)

// TestTwoListeners binds one address twice with SO_REUSEPORT, and the
// address stays served once the first listener closes.
func TestTwoListeners(t *testing.T) {
	first, err := Listen(t.Context(), "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addr().String()
	second, err := Listen(t.Context(), addr, true)
	if err != nil {
		first.Close()
		t.Fatalf("second listener on %s: %v", addr, err)
	}
	defer second.Close()
	first.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s after the first listener closed: %v", addr, err)
	}
	c.Close()
	got, err := second.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	// Without SO_REUSEPORT the address is taken.
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Errorf("a plain listener bound %s next to a SO_REUSEPORT one", addr)
	}
}
