//go:build unix

package client

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// BenchmarkShipperRouterLine measures the router's path into the apps'
// log: RouterLine with a typical line, and the Shipper's goroutine
// streaming the frames over loopback HTTP to an endpoint that decodes and
// counts them (the aggregator's own work is left out, so allocs/op is the
// Shipper's). Every 1,000 lines it waits for the Shipper to catch up, so
// that no line is dropped; all lines are confirmed before the timer stops.
// ns/op is therefore paced by the Shipper's batching pauses; cpu-ns/op is
// the CPU time (user and system, of the whole process: the Shipper, the
// HTTP client and the endpoint) per line.
func BenchmarkShipperRouterLine(b *testing.B) {
	var got atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 0, 128<<10)
		var f types.Frame
		for {
			n, err := r.Body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			p := buf
			if len(p) >= len(types.FrameMagic) && string(p[:len(types.FrameMagic)]) == types.FrameMagic {
				p = p[len(types.FrameMagic):]
			}
			for {
				m, derr := types.DecodeFrame(p, &f)
				if derr != nil {
					break
				}
				got.Add(1)
				p = p[m:]
			}
			buf = buf[:copy(buf, p)]
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return
				}
				io.WriteString(w, `{"accepted":0,"duplicates":0}`)
				return
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	s, err := NewShipper(ShipperConfig{URL: "http://" + ln.Addr().String(), Token: "t", CloseTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	line := []byte(`at=info method=GET path="/" host=bench.test request_id=0123456789abcdef0123456789abcdef fwd="127.0.0.1" status=200 bytes=34 service=1ms protocol=http`)
	at := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		s.RouterLine("bench", at, line)
		if i%1000 == 999 {
			for s.held() > DefaultBuffer/2 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if full, invalid := s.Dropped(); full+invalid > 0 || got.Load() != int64(b.N) {
		b.Fatalf("%d lines arrived of %d; dropped %d (full) and %d (invalid)", got.Load(), b.N, full, invalid)
	}
}

// cpuTime returns the CPU time (user and system) the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// held returns how many lines wait to be shipped or confirmed.
func (s *Shipper) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.npending + s.inflight
}
