package controller

import (
	"net"
	"testing"
)

func TestInternalURL(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:7070", "http://127.0.0.1:7070"},
		{"0.0.0.0:7070", "http://127.0.0.1:7070"},
		{"[::]:7070", "http://127.0.0.1:7070"},
		{"10.0.0.5:7070", "http://10.0.0.5:7070"},
		{"[::1]:7070", "http://[::1]:7070"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := internalURL(addr); got != tt.want {
				t.Errorf("internalURL(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}
