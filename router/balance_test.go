package router

import (
	"testing"
	"time"
)

func newBackends(n int) []*backend {
	p := &pool{idleTimeout: int64(time.Minute), maxIdle: 4}
	bs := make([]*backend, n)
	for i := range bs {
		bs[i] = &backend{addr: string(rune('a' + i)), pool: p}
	}
	return bs
}

func TestPickPrefersLessBusy(t *testing.T) {
	bs := newBackends(4)
	bs[0].inflight.Store(10)
	bs[1].inflight.Store(5)
	counts := map[*backend]int{}
	for range 4000 {
		counts[pick(bs, nil, 0)]++
	}
	t.Logf("picks: busy(10)=%d busy(5)=%d idle=%d idle=%d", counts[bs[0]], counts[bs[1]], counts[bs[2]], counts[bs[3]])
	// With two distinct random choices the busiest backend is never the
	// better of a pair, and the second busiest only against the busiest.
	if counts[bs[0]] != 0 {
		t.Errorf("the busiest backend got %d requests, want 0", counts[bs[0]])
	}
	if counts[bs[1]] >= counts[bs[2]] || counts[bs[1]] >= counts[bs[3]] {
		t.Errorf("a busy backend got %d requests, not fewer than the idle ones (%d, %d)", counts[bs[1]], counts[bs[2]], counts[bs[3]])
	}
}

func TestPickSpreadsEvenLoad(t *testing.T) {
	bs := newBackends(3)
	counts := map[*backend]int{}
	for range 3000 {
		counts[pick(bs, nil, 0)]++
	}
	for i, b := range bs {
		if counts[b] < 700 {
			t.Errorf("backend %d got %d of 3000 picks", i, counts[b])
		}
	}
}

func TestPickSkipsTried(t *testing.T) {
	bs := newBackends(3)
	tried := []*backend{bs[0], bs[2]}
	for range 100 {
		if got := pick(bs, tried, 0); got != bs[1] {
			t.Fatalf("pick = %s, want the untried b", got.addr)
		}
	}
	if got := pick(bs, bs, 0); got != nil {
		t.Errorf("pick with all tried = %s, want nil", got.addr)
	}
	one := bs[:1]
	if got := pick(one, nil, 0); got != bs[0] {
		t.Errorf("pick of one = %v", got)
	}
	if got := pick(one, one, 0); got != nil {
		t.Errorf("pick of one tried = %v, want nil", got)
	}
	if got := pick(nil, nil, 0); got != nil {
		t.Errorf("pick of none = %v, want nil", got)
	}
}

func TestFailingBackendLeftOutThenBack(t *testing.T) {
	bs := newBackends(3)
	bad := bs[0]
	now := int64(time.Hour)
	bad.failed(now)
	for range 1000 {
		if pick(bs, nil, now) == bad {
			t.Fatal("a backend in back-off was picked")
		}
	}
	// When it is the only untried one, it is still tried.
	if got := pick(bs, bs[1:], now); got != bad {
		t.Errorf("with the others tried, pick = %v, want the backing-off one", got)
	}
	// After the back-off it comes back.
	later := now + int64(minBackoff)
	seen := false
	for range 1000 {
		if pick(bs, nil, later) == bad {
			seen = true
			break
		}
	}
	if !seen {
		t.Error("the backend did not come back after its back-off")
	}
	bad.succeeded()
	if bad.fails.Load() != 0 || !bad.usable(now) {
		t.Error("success did not end the back-off")
	}
}

func TestBackoffGrows(t *testing.T) {
	b := newBackends(1)[0]
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		b.failed(0)
		if got := time.Duration(b.skipUntil.Load()); got != w*time.Second {
			t.Errorf("failure %d: back-off %v, want %v", i+1, got, w*time.Second)
		}
	}
	b.succeeded()
	b.failed(0)
	if got := time.Duration(b.skipUntil.Load()); got != time.Second {
		t.Errorf("after a success the back-off restarts at %v, want 1s", got)
	}
}
