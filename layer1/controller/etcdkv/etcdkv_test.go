package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestEtcdErr checks that a failed etcd request is reported as what it
// is: no answer (503 unavailable), or a request etcd refused.
func TestEtcdErr(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		unreachable bool
	}{
		{"deadline", context.DeadlineExceeded, true},
		{"cancelled", context.Canceled, true},
		{"connection", errors.New("dial tcp 127.0.0.1:2379: connect: connection refused"), true},
		{"no leader", rpctypes.ErrNoLeader, true},
		{"timeout", fmt.Errorf("wrapped: %w", rpctypes.ErrTimeout), true},
		{"request too large", rpctypes.ErrRequestTooLarge, false},
		{"no space", rpctypes.ErrNoSpace, false},
		{"too many ops", rpctypes.ErrTooManyOps, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Err("put k", tt.err)
			if got := errors.Is(err, ErrUnreachable); got != tt.unreachable {
				t.Errorf("%v: unreachable = %t, want %t", err, got, tt.unreachable)
			}
			if got := errors.Is(err, ErrRefused); got == tt.unreachable {
				t.Errorf("%v: refused = %t, want %t", err, got, !tt.unreachable)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not wrap %v", err, tt.err)
			}
		})
	}
}
