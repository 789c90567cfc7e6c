package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host/attach"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestRunJob runs one-off jobs through POST /v1/apps/{app}/run against a
// real scheduler, host agent and Docker: bad requests are refused before
// anything runs, an attached run carries stdin, stdout, stderr and the
// exit status through the controller, a detached one runs in the
// background, and every run's formation and container go when it ends.
func TestRunJob(t *testing.T) {
	t.Parallel()
	docker := testenv.Docker(t)
	image := stack.StackRef(stack.DefaultVersion)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	_, err := docker.ImageInspect(ctx, image)
	cancel()
	if cerrdefs.IsNotFound(err) {
		t.Fatalf("the image %s is missing: run `bin/gantryd stack build` to build it (or go test -short to skip)", image)
	}
	if err != nil {
		t.Fatal(err)
	}
	cluster := fmt.Sprintf("cr-%d", time.Now().UnixNano()%1e9)
	testenv.CleanupContainers(t, docker, cluster)
	logs := &syncBuffer{}
	a := newAPI(t, func(c *controller.Config) {
		c.Cluster = cluster
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	startLayer0(t, a, docker, logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	for _, app := range []string{"runapp", "empty"} {
		if _, err := a.c.CreateApp(t.Context(), app); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.c.UpdateConfig(t.Context(), "runapp", map[string]*string{"FROM_CONFIG": ptr("configured")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateRelease(t.Context(), "runapp", types.ReleaseRequest{Image: image, Processes: map[string]types.Process{
		"worker": {Command: "sleep infinity"},
	}}); err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		upgrade := map[string]string{"Connection": "Upgrade", "Upgrade": attach.Protocol}
		admin := "Bearer " + a.token
		tests := []struct {
			name    string
			app     string
			body    string
			token   string
			headers map[string]string
			status  int
			code    string
			msg     string
		}{
			{"no token", "runapp", `{"command":["true"]}`, "", upgrade, 401, "unauthorized", "token"},
			{"platform token", "runapp", `{"command":["true"]}`, "Bearer host-token", upgrade, 403, "forbidden", "platform token"},
			{"unknown app", "nosuch", `{"command":["true"]}`, admin, upgrade, 404, "app_not_found", `"nosuch"`},
			{"no release", "empty", `{"command":["true"]}`, admin, upgrade, 422, "no_release", "no release"},
			{"no command", "runapp", `{"command":[]}`, admin, upgrade, 422, "invalid", "no command"},
			{"empty command", "runapp", `{"command":[""]}`, admin, upgrade, 422, "invalid", "no command"},
			{"NUL in the command", "runapp", `{"command":["a\u0000b"]}`, admin, upgrade, 422, "invalid", "NUL"},
			{"bad env name", "runapp", `{"command":["true"],"env":{"1X":"y"}}`, admin, upgrade, 422, "invalid", "1X"},
			{"detached with a terminal", "runapp", `{"command":["true"],"detach":true,"tty":true}`, admin, nil, 422, "invalid", "detach"},
			{"terminal too large", "runapp", `{"command":["true"],"tty":true,"rows":100000,"cols":80}`, admin, upgrade, 422, "invalid", "terminal size"},
			{"attached without upgrade", "runapp", `{"command":["true"]}`, admin, nil, 400, "bad_request", attach.Protocol},
			{"malformed JSON", "runapp", `{"command":`, admin, upgrade, 400, "bad_request", "JSON"},
			{"unknown field", "runapp", `{"cmd":["true"]}`, admin, upgrade, 400, "bad_request", "cmd"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, a.url+"/v1/apps/"+tc.app+"/run", strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				if tc.token != "" {
					req.Header.Set("Authorization", tc.token)
				}
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				var resp *http.Response
				if tc.headers == nil {
					resp, err = (&http.Client{Timeout: 30 * time.Second}).Do(req)
				} else {
					var conn *attach.Conn
					if conn, resp, err = attach.Dial(t.Context(), req, 30*time.Second); conn != nil {
						conn.Close()
						t.Fatal("the request was switched to the attach protocol")
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var body types.ErrorBody
				raw, _ := io.ReadAll(resp.Body)
				if err := json.Unmarshal(raw, &body); err != nil || body.Error == nil {
					t.Fatalf("status %d, body %q: not an API error", resp.StatusCode, raw)
				}
				if resp.StatusCode != tc.status || body.Error.Code != tc.code || !strings.Contains(body.Error.Message, tc.msg) {
					t.Fatalf("%d %s %q, want %d %s naming %q", resp.StatusCode, body.Error.Code, body.Error.Message, tc.status, tc.code, tc.msg)
				}
			})
		}
		if n := len(runFormations(t, a, "")); n != 0 {
			t.Fatalf("%d run formations after refused runs", n)
		}
	})

	t.Run("attached", func(t *testing.T) {
		conn, jobID, err := a.c.Run(t.Context(), "runapp", types.RunRequest{
			Command: []string{"sh", "-c", `read line; echo "got $line $FROM_CONFIG $EXTRA"; echo oops >&2; exit 4`},
			Env:     map[string]string{"EXTRA": "extra"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if !strings.HasPrefix(jobID, "runapp.run.1.") {
			t.Fatalf("job ID %q", jobID)
		}
		w := attach.NewWriter(conn)
		for _, in := range []string{"hello\n", ""} {
			if err := w.Write(attach.Frame{Type: attach.Stdin, Data: []byte(in)}); err != nil {
				t.Fatal(err)
			}
		}
		stdout, stderr, code := readRun(t, conn)
		if stdout != "got hello configured extra\n" || stderr != "oops\n" || code != 4 {
			t.Fatalf("stdout %q, stderr %q, exit %d", stdout, stderr, code)
		}
		waitGone(t, a, docker, jobID)
	})

	t.Run("not found", func(t *testing.T) {
		conn, jobID, err := a.c.Run(t.Context(), "runapp", types.RunRequest{Command: []string{"no-such-command"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		w := attach.NewWriter(conn)
		if err := w.Write(attach.Frame{Type: attach.Stdin, Data: []byte{}}); err != nil {
			t.Fatal(err)
		}
		r := attach.NewReader(conn)
		var errs []string
		for {
			f, err := r.Read()
			if err != nil {
				t.Fatalf("no exit frame: %v (errors %q)", err, errs)
			}
			if f.Type == attach.Error {
				errs = append(errs, string(f.Data))
			}
			if f.Type == attach.Exit {
				if f.ExitCode() != 127 || len(errs) != 1 || !strings.Contains(errs[0], "no-such-command") {
					t.Fatalf("exit %d, errors %q; want 127 and the command named", f.ExitCode(), errs)
				}
				break
			}
		}
		waitGone(t, a, docker, jobID)
	})

	t.Run("client gone", func(t *testing.T) {
		conn, jobID, err := a.c.Run(t.Context(), "runapp", types.RunRequest{Command: []string{"sh", "-c", "echo ready; sleep 1000"}})
		if err != nil {
			t.Fatal(err)
		}
		r := attach.NewReader(conn)
		if f, err := r.Read(); err != nil || string(f.Data) != "ready\n" {
			t.Fatalf("first frame %v %q, %v", f.Type, f.Data, err)
		}
		conn.Close()
		waitGone(t, a, docker, jobID)
	})

	t.Run("detached", func(t *testing.T) {
		job, err := a.c.RunDetached(t.Context(), "runapp", types.RunRequest{Command: []string{"sh", "-c", "echo in the background; sleep 1"}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(job.ID, "runapp.run.1.") || job.App != "runapp" || job.Release != 1 || job.Host != "host-1" {
			t.Fatalf("job %+v", job)
		}
		waitGone(t, a, docker, job.ID)
	})
}

// readRun reads an attached run's frames until its exit frame.
func readRun(t *testing.T, conn io.Reader) (stdout, stderr string, code int) {
	t.Helper()
	var out, errs bytes.Buffer
	r := attach.NewReader(conn)
	for {
		f, err := r.Read()
		if err != nil {
			t.Fatalf("no exit frame: %v; stdout %q, stderr %q", err, out.String(), errs.String())
		}
		switch f.Type {
		case attach.Stdout:
			out.Write(f.Data)
		case attach.Stderr:
			errs.Write(f.Data)
		case attach.Error:
			t.Fatalf("error frame %q", f.Data)
		case attach.Exit:
			return out.String(), errs.String(), f.ExitCode()
		}
	}
}

// runFormations returns the keys of the run formations of the cluster
// whose job template runs on release (any when "").
func runFormations(t *testing.T, a *api, release string) []string {
	t.Helper()
	resp, err := a.etcd.Get(t.Context(), a.space.Formations(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		var f keyspace.Formation
		if json.Unmarshal(kv.Value, &f) == nil && f.Type == types.RunType && (release == "" || f.Release == release) {
			keys = append(keys, string(kv.Key))
		}
	}
	return keys
}

// waitGone waits until the run job's container, state, assignment and
// formation are gone.
func waitGone(t *testing.T, a *api, docker interface {
	ContainerList(context.Context, container.ListOptions) ([]container.Summary, error)
}, jobID string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := docker.ContainerList(t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", keyspace.LabelCluster+"="+a.space.Cluster()),
			filters.Arg("label", keyspace.LabelJob+"="+jobID))})
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.etcd.Get(t.Context(), a.space.Job(jobID))
		if err != nil {
			t.Fatal(err)
		}
		formations := runFormations(t, a, "")
		if len(list) == 0 && len(st.Kvs) == 0 && len(formations) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not gone after a minute: %d containers, state %d, run formations %v", jobID, len(list), len(st.Kvs), formations)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
