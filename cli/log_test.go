package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/logaggregator/logaggtest"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

func TestFormatLogLine(t *testing.T) {
	at := time.Date(2026, 11, 24, 22, 41, 3, 123456789, time.UTC)
	cases := []struct {
		name string
		line logtypes.Line
		want string
	}{
		{"app with index", logtypes.Line{Source: "app", Type: "web", Index: 1, Time: at, Msg: "hello"}, "2026-11-24T22:41:03.123Z app[web.1]: hello\n"},
		{"app without index", logtypes.Line{Source: "app", Type: "build", Time: at, Msg: "-----> Building"}, "2026-11-24T22:41:03.123Z app[build]: -----> Building\n"},
		{"app without type", logtypes.Line{Source: "app", Time: at, Msg: "x"}, "2026-11-24T22:41:03.123Z app: x\n"},
		{"router", logtypes.Line{Source: "router", Time: at, Msg: `at=info method=GET path="/"`}, "2026-11-24T22:41:03.123Z router: at=info method=GET path=\"/\"\n"},
		{"gantry about a job", logtypes.Line{Source: "gantry", Type: "web", Index: 2, Time: at, Msg: "web.2 crashed (exit 1)"}, "2026-11-24T22:41:03.123Z gantry: web.2 crashed (exit 1)\n"},
		{"other zone, whole second", logtypes.Line{Source: "gantry", Time: time.Date(2026, 11, 25, 0, 41, 3, 0, time.FixedZone("x", 2*3600)), Msg: "deployed v2"}, "2026-11-24T22:41:03.000Z gantry: deployed v2\n"},
		{"empty message", logtypes.Line{Source: "app", Type: "web", Index: 1, Time: at}, "2026-11-24T22:41:03.123Z app[web.1]: \n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatLogLine(tc.line); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 24, 22, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		err  string
	}{
		{"10m", now.Add(-10 * time.Minute), ""},
		{"1h30m", now.Add(-90 * time.Minute), ""},
		{"0s", now, ""},
		{"2026-11-24T21:00:00Z", time.Date(2026, 11, 24, 21, 0, 0, 0, time.UTC), ""},
		{"2026-11-24T23:00:00.5+02:00", time.Date(2026, 11, 24, 21, 0, 0, 500000000, time.UTC), ""},
		{"-5m", time.Time{}, "0 or more"},
		{"yesterday", time.Time{}, "want a duration like 10m"},
		{"10", time.Time{}, "want a duration like 10m"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSince(tc.in, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// startLogPlatform runs a real log aggregator and a real controller that
// reads it, on loopback, until the test ends. It returns the controller's
// URL, an admin token and the aggregator's URL.
func startLogPlatform(t *testing.T) (url, token, logURL string) {
	t.Helper()
	logURL = logaggtest.Start(t, "host-token")

	db := testenv.NewDatabase(t)
	if err := controller.Migrate(t.Context(), db, nil); err != nil {
		t.Fatal(err)
	}
	token, err := controller.CreateAdminToken(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.New(controller.Config{
		DatabaseURL: db, Cluster: "c-cli-log", Etcd: testenv.Etcd(t), HostToken: "host-token",
		LogURL: logURL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		srv.Close()
	})
	return "http://" + ln.Addr().String(), token, logURL
}

func TestLogCommand(t *testing.T) {
	url, token, logURL := startLogPlatform(t)
	isolate(t, url)
	t.Setenv("GANTRY_TOKEN", token)
	if res := runCLI(t, "", "create", "demo"); res.code != 0 {
		t.Fatalf("create: %+v", res)
	}
	at := time.Date(2026, 11, 24, 22, 41, 3, 0, time.UTC)
	body := `{"app":"demo","source":"gantry","time":"2026-11-24T22:41:03Z","msg":"deployed v1"}
{"app":"demo","source":"app","type":"web","job":"j1","index":1,"time":"2026-11-24T22:41:04Z","msg":"listening"}
{"app":"demo","source":"app","type":"worker","job":"j2","index":1,"time":"2026-11-24T22:41:05Z","msg":"working"}
{"app":"demo","source":"router","time":"2026-11-24T22:41:06Z","msg":"at=info method=GET path=\"/\" status=200"}
`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, logURL+"/v1/ingest", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer host-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %s", resp.Status)
	}

	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"all", []string{"log", "-a", "demo"}, 0, "2026-11-24T22:41:03.000Z gantry: deployed v1\n" +
			"2026-11-24T22:41:04.000Z app[web.1]: listening\n" +
			"2026-11-24T22:41:05.000Z app[worker.1]: working\n" +
			"2026-11-24T22:41:06.000Z router: at=info method=GET path=\"/\" status=200\n", ""},
		{"type", []string{"log", "-a", "demo", "-t", "web"}, 0, "2026-11-24T22:41:04.000Z app[web.1]: listening\n", ""},
		{"job", []string{"log", "-a", "demo", "-j", "worker.1"}, 0, "2026-11-24T22:41:05.000Z app[worker.1]: working\n", ""},
		{"last one", []string{"log", "-a", "demo", "-n", "1"}, 0, "2026-11-24T22:41:06.000Z router: at=info method=GET path=\"/\" status=200\n", ""},
		{"since", []string{"log", "-a", "demo", "--since", at.Add(2 * time.Second).Format(time.RFC3339)}, 0,
			"2026-11-24T22:41:05.000Z app[worker.1]: working\n2026-11-24T22:41:06.000Z router: at=info method=GET path=\"/\" status=200\n", ""},
		{"json", []string{"log", "-a", "demo", "-n", "1", "--json"}, 0,
			`{"app":"demo","source":"router","time":"2026-11-24T22:41:06Z","msg":"at=info method=GET path=\"/\" status=200"}` + "\n", ""},
		{"bad since", []string{"log", "-a", "demo", "--since", "soon"}, 1, "", "--since \"soon\": want a duration like 10m"},
		{"bad type", []string{"log", "-a", "demo", "-t", "Web!"}, 1, "", "-t \"Web!\""},
		{"negative n", []string{"log", "-a", "demo", "-n", "-3"}, 1, "", "-n -3"},
		{"unknown app", []string{"log", "-a", "nope"}, 1, "", `no app named "nope"`},
		{"argument", []string{"log", "-a", "demo", "extra"}, 1, "", `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, "", tc.args...)
			if res.code != tc.code || res.stdout != tc.stdout || !strings.Contains(res.stderr, tc.stderr) {
				t.Fatalf("gantry %s: exit %d\nstdout: %q\nstderr: %q\nwant exit %d, stdout %q, stderr with %q",
					strings.Join(tc.args, " "), res.code, res.stdout, res.stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}
