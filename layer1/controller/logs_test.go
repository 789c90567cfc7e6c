package controller_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/layer1/logaggregator/logaggtest"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// logMsgs reads the app's whole log through the controller.
func logMsgs(t *testing.T, a *api, app string, q logtypes.Query) []string {
	t.Helper()
	var out []string
	err := a.c.Log(t.Context(), app, q, func(l logtypes.Line) error {
		out = append(out, l.Source+": "+l.Msg)
		return nil
	})
	if err != nil {
		t.Fatalf("Log: %v", err)
	}
	return out
}

func TestAppLog(t *testing.T) {
	t.Parallel()
	logURL := logaggtest.Start(t, "host-token")
	shipper, err := logclient.NewShipper(logclient.ShipperConfig{URL: logURL, Token: "host-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shipper.Close() })
	a := newAPI(t, func(c *controller.Config) {
		c.LogURL = logURL
		c.Events = shipper
	})
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}

	t.Run("errors", func(t *testing.T) {
		err := a.c.Log(ctx, "nope", logtypes.Query{Lines: 10}, func(logtypes.Line) error { return nil })
		wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)
		for _, tc := range []struct {
			name, path, token string
			status            int
			code              string
		}{
			{"no token", "/v1/apps/demo/log", "", 401, "unauthorized"},
			{"platform token", "/v1/apps/demo/log", "Bearer host-token", 403, "forbidden"},
			{"bad lines", "/v1/apps/demo/log?lines=many", "Bearer " + a.token, 400, "bad_request"},
			{"bad since", "/v1/apps/demo/log?since=10m", "Bearer " + a.token, 400, "bad_request"},
			{"wrong method", "/v1/apps/demo/log", "Bearer " + a.token, 405, "method_not_allowed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				method := http.MethodGet
				if tc.name == "wrong method" {
					method = http.MethodPost
				}
				resp, body := a.raw(t, method, tc.path, "", tc.token)
				if resp.StatusCode != tc.status || !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
					t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
				}
			})
		}
	})

	t.Run("events", func(t *testing.T) {
		if _, err := a.c.CreateRelease(ctx, "demo", webRelease("gantry-test/logs:none")); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"FOO": ptr("1"), "BAR": ptr("2")}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"FOO": nil}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.Scale(ctx, "demo", map[string]int{"web": 2}); err != nil {
			t.Fatal(err)
		}
		if err := a.c.Restart(ctx, "demo", "web"); err != nil {
			t.Fatal(err)
		}
		// The deployments add events of their own: these come in this
		// order among them.
		want := []string{"gantry: set BAR, FOO", "gantry: unset FOO", "gantry: scaled web=2", "gantry: restarting web"}
		var got []string
		waitFor(t, "the events in the log", func() bool {
			got = logMsgs(t, a, "demo", logtypes.Query{Lines: 100})
			return slices.Contains(got, want[len(want)-1])
		})
		ours := slices.DeleteFunc(slices.Clone(got), func(m string) bool { return !slices.Contains(want, m) })
		if !slices.Equal(ours, want) {
			t.Fatalf("log %q, want %q in this order", got, want)
		}
	})

	t.Run("follow", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		lines := make(chan logtypes.Line, 10)
		ended := make(chan error, 1)
		go func() {
			ended <- a.c.Log(fctx, "demo", logtypes.Query{Lines: 1, Follow: true, Type: "web"}, func(l logtypes.Line) error {
				lines <- l
				return nil
			})
		}()
		recv := func() logtypes.Line {
			t.Helper()
			select {
			case l := <-lines:
				return l
			case err := <-ended:
				t.Fatalf("the followed log ended: %v", err)
			case <-ctx.Done():
				t.Fatal("no line before the test's deadline")
			}
			return logtypes.Line{}
		}
		// The history: the last line about web (the restart is app-wide).
		for i := range 3 {
			shipper.Ship(logtypes.Line{App: "demo", Source: logtypes.SourceApp, Type: "web", Index: 1, Job: "j1",
				Time: time.Now().UTC(), Msg: fmt.Sprintf("live %d", i)})
			if got := recv(); got.Msg != fmt.Sprintf("live %d", i) || got.Process() != "web.1" {
				t.Fatalf("followed %+v, want live %d of web.1", got, i)
			}
		}
		// The client leaving ends the stream.
		cancel()
		select {
		case err := <-ended:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("Log after cancel: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("the followed log did not end when its context did")
		}
	})

	t.Run("deleted app", func(t *testing.T) {
		if err := a.c.DeleteApp(ctx, "demo"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
			t.Fatal(err)
		}
		// The new app's log may get its own events, but none of the old one's.
		for _, m := range logMsgs(t, a, "demo", logtypes.Query{Lines: 100}) {
			if strings.Contains(m, "scaled web=2") || strings.Contains(m, "live ") {
				t.Fatalf("a new app of a deleted app's name sees its log: %q", m)
			}
		}
	})

	t.Run("no aggregator", func(t *testing.T) {
		b := newAPI(t)
		if _, err := b.c.CreateApp(ctx, "demo"); err != nil {
			t.Fatal(err)
		}
		err := b.c.Log(ctx, "demo", logtypes.Query{Lines: 10}, func(logtypes.Line) error { return nil })
		wantAPIError(t, err, types.ErrUnavailable, "no log aggregator")
	})
}

// TestAppLogHosts reads an app's log from the aggregators of two hosts,
// with a third host's down, through the API.
func TestAppLogHosts(t *testing.T) {
	t.Parallel()
	urlA, urlB := logaggtest.Start(t, "host-token"), logaggtest.Start(t, "host-token")
	ship := func(url string, lines ...logtypes.Line) {
		t.Helper()
		s, err := logclient.NewShipper(logclient.ShipperConfig{URL: url, Token: "host-token"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			s.Ship(l)
		}
		if err := s.Close(); err != nil { // sends what it holds
			t.Fatal(err)
		}
	}
	a := newAPI(t, func(c *controller.Config) { c.LogURL = urlA })
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	for id, u := range map[string]string{"h1": urlA, "h2": urlB, "h3": "http://" + testenv.FreeAddr(t)} {
		a.put(t, a.space.Host(id), keyspace.Host{ID: id, Addr: "127.0.0.1", LogURL: u, Healthy: true})
	}
	t0 := time.Now().UTC()
	line := func(ms int, msg string) logtypes.Line {
		return logtypes.Line{App: "demo", Source: logtypes.SourceApp, Type: "web", Index: 1, Job: "j1",
			Time: t0.Add(time.Duration(ms) * time.Millisecond), Msg: msg}
	}
	ship(urlA, line(1, "a1"), line(3, "a3"))
	ship(urlB, line(2, "b2"), line(4, "b4"))

	want := []string{"app: b2", "app: a3", "app: b4"}
	if got := logMsgs(t, a, "demo", logtypes.Query{Lines: 3}); !slices.Equal(got, want) {
		t.Fatalf("log -n 3 = %q, want %q", got, want)
	}

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan string, 10)
	ended := make(chan error, 1)
	go func() {
		ended <- a.c.Log(fctx, "demo", logtypes.Query{Lines: 1, Follow: true}, func(l logtypes.Line) error {
			lines <- l.Msg
			return nil
		})
	}()
	recv := func() string {
		t.Helper()
		select {
		case m := <-lines:
			return m
		case err := <-ended:
			t.Fatalf("the followed log ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no line before the test's end")
		}
		return ""
	}
	if m := recv(); m != "b4" {
		t.Fatalf("followed %q first, want the history's b4", m)
	}
	ship(urlB, line(5, "b5"))
	if m := recv(); m != "b5" {
		t.Fatalf("followed %q, want b5 of the second host", m)
	}
	ship(urlA, line(6, "a6"))
	if m := recv(); m != "a6" {
		t.Fatalf("followed %q, want a6 of the first host", m)
	}
	cancel()
	if err := <-ended; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Log after cancel: %v", err)
	}
}
