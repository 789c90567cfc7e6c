package logread_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/logread"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// followed runs a Follow and collects what it emits.
type followed struct {
	started chan struct{} // closed at the first emit
	ended   chan error
	cancel  context.CancelFunc

	mu    sync.Mutex
	lines []string
	more  chan struct{} // a value after each emit with lines
}

func follow(t *testing.T, r *logread.Reader, q types.Query, gone func(context.Context) bool) *followed {
	t.Helper()
	ctx, cancel := context.WithCancel(waitContext(t))
	f := &followed{started: make(chan struct{}), ended: make(chan error, 1), cancel: cancel, more: make(chan struct{}, 1)}
	var once sync.Once
	go func() {
		f.ended <- r.Follow(ctx, "demo", q, gone, func(raws [][]byte) error {
			once.Do(func() { close(f.started) })
			if len(raws) == 0 {
				return nil
			}
			got, err := texts(raws)
			if err != nil {
				t.Error(err)
				return err
			}
			f.mu.Lock()
			f.lines = append(f.lines, got...)
			f.mu.Unlock()
			select {
			case f.more <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-f.ended; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Follow: %v", err)
		}
	})
	select {
	case <-f.started:
	case err := <-f.ended:
		t.Fatalf("Follow ended before it started: %v", err)
	}
	return f
}

// got returns the texts emitted so far.
func (f *followed) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lines)
}

// waitFor waits until the texts emitted hold all of want.
func (f *followed) waitFor(t *testing.T, want ...string) {
	t.Helper()
	ctx := waitContext(t)
	for {
		got := f.got()
		if !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(got, w) }) {
			return
		}
		select {
		case <-f.more:
		case err := <-f.ended:
			t.Fatalf("Follow ended (%v) with %q, want %q in it", err, got, want)
		case <-ctx.Done():
			t.Fatalf("followed %q, want %q in it", got, want)
		}
	}
}

func TestFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	t.Parallel()
	etcd := testenv.Etcd(t)
	space := keyspace.MustNew("follow")
	a, b, c := startAggregator(t), startAggregator(t), startAggregator(t)
	ingest(t, a.url(), numbered(1, "web"), numbered(3, "web"))
	ingest(t, b.url(), numbered(2, "web"), numbered(4, "web"))
	register(t, etcd, space, map[string]string{"h1": a.url(), "h2": b.url(), "h3": "http://" + testenv.FreeAddr(t)})
	var logs logBuffer
	r := newReader(t, etcd, space, "", &logs)
	f := follow(t, r, types.Query{Lines: 3, Follow: true}, nil)

	// The history first: the newest lines of both, merged.
	f.waitFor(t, "2", "3", "4")
	if got := f.got(); !slices.Equal(got[:3], []string{"2", "3", "4"}) {
		t.Fatalf("history %q, want 2 3 4", got)
	}
	if !strings.Contains(logs.String(), "log aggregator unreachable") {
		t.Fatalf("the log does not name the aggregator down:\n%s", logs.String())
	}
	// The live lines of both.
	ingest(t, a.url(), now("a live"))
	ingest(t, b.url(), now("b live"))
	f.waitFor(t, "a live", "b live")

	// A host that registers later: its lines since the follow started.
	ingest(t, c.url(), now("c before its host registered"))
	register(t, etcd, space, map[string]string{"h4": c.url()})
	ingest(t, c.url(), now("c live"))
	f.waitFor(t, "c before its host registered", "c live")

	// An aggregator that restarts: the lines it kept meanwhile, none twice.
	b.stop()
	b.start(t)
	ingest(t, b.url(), now("b after its restart"))
	f.waitFor(t, "b after its restart")

	// A host that goes away and comes back.
	if _, err := etcd.Delete(t.Context(), space.Host("h2")); err != nil {
		t.Fatal(err)
	}
	b.stop()
	b.start(t)
	register(t, etcd, space, map[string]string{"h2": b.url()})
	ingest(t, b.url(), now("b after its host came back"))
	f.waitFor(t, "b after its host came back")

	// A last line of each, so that anything given twice is in by then.
	ingest(t, a.url(), now("a last"))
	ingest(t, b.url(), now("b last"))
	ingest(t, c.url(), now("c last"))
	f.waitFor(t, "a last", "b last", "c last")
	got := f.got()
	for i, m := range got {
		if slices.Contains(got[i+1:], m) {
			t.Fatalf("followed %q twice: %q", m, got)
		}
	}
	f.cancel()
	if err := <-f.ended; err != nil {
		t.Fatalf("Follow after its context ended: %v", err)
	}
	f.ended <- nil // for the cleanup
}

func TestFollowEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	t.Parallel()
	etcd := testenv.Etcd(t)
	a := startAggregator(t)
	down := "http://" + testenv.FreeAddr(t)
	for i, tc := range []struct {
		name string
		// hosts are registered before Follow.
		hosts map[string]string
		// end, when not nil, is done once Follow started.
		end  func(t *testing.T, f *followed, gone *atomic.Bool)
		want error // of Follow
	}{
		{name: "the app is deleted", hosts: map[string]string{"h1": a.url()},
			end: func(t *testing.T, f *followed, gone *atomic.Bool) {
				gone.Store(true)
				deleteLog(t, a.url())
			}},
		{name: "every aggregator down", hosts: map[string]string{"h1": down}, want: logread.ErrUnavailable},
		{name: "no aggregator", want: logread.ErrNoAggregator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			space := keyspace.MustNew("ends-" + string(rune('a'+i)))
			register(t, etcd, space, tc.hosts)
			r := newReader(t, etcd, space, "", &logBuffer{})
			var gone atomic.Bool
			goneFn := func(context.Context) bool { return gone.Load() }
			if tc.want != nil {
				err := r.Follow(t.Context(), "demo", types.Query{Follow: true}, goneFn, func([][]byte) error {
					t.Error("emit called")
					return nil
				})
				if !errors.Is(err, tc.want) {
					t.Fatalf("Follow = %v, want %v", err, tc.want)
				}
				return
			}
			f := follow(t, r, types.Query{Follow: true}, goneFn)
			tc.end(t, f, &gone)
			select {
			case err := <-f.ended:
				if err != nil {
					t.Fatalf("Follow = %v, want nil", err)
				}
				f.ended <- nil // for the cleanup
			case <-waitContext(t).Done():
				t.Fatal("Follow did not end")
			}
		})
	}
}

// deleteLog deletes the log of demo in the aggregator at url.
func deleteLog(t *testing.T, url string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, url+"/v1/apps/demo/log", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %s", resp.Status)
	}
}
