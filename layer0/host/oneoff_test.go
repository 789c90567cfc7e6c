package host_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// blobServer stands in for the controller's blobstore: GET and PUT under
// /v1/blobs/, with the platform token. A PUT under fail/ answers 500 and
// one under big/ 413.
type blobServer struct {
	srv *httptest.Server

	mu    sync.Mutex
	blobs map[string][]byte
	gets  map[string]int
	puts  map[string]int
}

func newBlobServer(t *testing.T) *blobServer {
	b := &blobServer{blobs: map[string][]byte{}, gets: map[string]int{}, puts: map[string]int{}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *blobServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, `{"error":{"code":"unauthorized","message":"missing or wrong API token"}}`, http.StatusUnauthorized)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/blobs/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		b.gets[path]++
		data, ok := b.blobs[path]
		if !ok {
			http.Error(w, `{"error":{"code":"blob_not_found","message":"no such blob"}}`, http.StatusNotFound)
			return
		}
		w.Write(data)
	case http.MethodPut:
		b.puts[path]++
		switch {
		case strings.HasPrefix(path, "fail/"):
			http.Error(w, "storage on fire", http.StatusInternalServerError)
			return
		case strings.HasPrefix(path, "big/"):
			http.Error(w, `{"error":{"code":"too_large","message":"the blob is larger than 10 bytes"}}`, http.StatusRequestEntityTooLarge)
			return
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.ContentLength != int64(len(data)) {
			http.Error(w, "the body does not match its Content-Length", http.StatusBadRequest)
			return
		}
		b.blobs[path] = data
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"path": path, "digest": digestOf(data), "size": len(data)})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (b *blobServer) url(path string) string { return b.srv.URL + "/v1/blobs/" + path }

func (b *blobServer) store(path string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blobs[path] = data
}

func (b *blobServer) blob(path string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.blobs[path]
	return data, ok
}

// counts returns a copy of the GET and PUT counts by path.
func (b *blobServer) counts() (gets, puts map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return clone(b.gets), clone(b.puts)
}

func clone(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// sub is e for a subtest, whose failures must end the subtest's goroutine.
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// oneOffSpec is a one-off job of the test image running args.
func (e *env) oneOffSpec(args ...string) keyspace.JobSpec {
	return keyspace.JobSpec{
		App: "builder", Release: "r1", ReleaseVersion: 1, Type: "build",
		Image:       e.image,
		Cmd:         args,
		OneOff:      true,
		Resources:   keyspace.Resources{Memory: 64 << 20, CPUShares: 256, PIDs: 100},
		StopTimeout: 3 * time.Second,
	}
}

// jobContainers lists the containers, running or not, of one job.
func (e *env) jobContainers(jobID string) []container.Summary {
	e.t.Helper()
	list, err := e.docker.ContainerList(e.t.Context(), container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", keyspace.LabelCluster+"="+e.cluster),
			filters.Arg("label", keyspace.LabelJob+"="+jobID),
		),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// waitRemoved waits until the job has no container left.
func (e *env) waitRemoved(jobID string) {
	e.t.Helper()
	waitFor(e.t, "the container of "+jobID+" removed", func() (bool, string) {
		list := e.jobContainers(jobID)
		return len(list) == 0, fmt.Sprintf("%d containers", len(list))
	})
}

// logTexts returns the kept output of a job through the agent's API.
func (e *env) logTexts(api *hostclient.Client, jobID string) []string {
	e.t.Helper()
	var texts []string
	for _, l := range readAll(e.t, api, jobID, hostclient.LogOptions{}) {
		texts = append(texts, l.Text)
	}
	return texts
}

// checkFinal checks that the states a job went through end in final and
// that nothing ran again after it.
func checkFinal(t *testing.T, states []keyspace.JobState, final string) {
	t.Helper()
	i := slices.IndexFunc(states, func(st keyspace.JobState) bool { return st.State == final })
	if i < 0 {
		t.Fatalf("states %v never reached %s", stateNames(states), final)
	}
	for _, st := range states[i:] {
		if st.State != final {
			t.Errorf("states %v: %s after %s; a one-off job must stay %s", stateNames(states), st.State, final, final)
		}
	}
}

func stateNames(states []keyspace.JobState) []string {
	var names []string
	for _, st := range states {
		names = append(names, st.State)
	}
	return names
}

func testOneOff(t *testing.T, f *fixture) {
	e := f.env(t)
	blobs := newBlobServer(t)
	src := []byte("hello, build\n")
	blobs.store("src/app.txt", src)
	blobs.store("src/copy.txt", src)
	art := keyspace.Artifact{URL: blobs.url("src/app.txt"), Digest: digestOf(src), Path: "/in/app.txt"}
	cfg := e.config("h1")
	first := e.start(cfg)
	api := e.api("h1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exeInfo, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}

	// The jobs, each checked in its own subtest; all are left assigned,
	// to check after the agent restarts that none runs again.
	final := map[string]string{}
	var finalMu sync.Mutex
	done := func(jobID, state string) {
		finalMu.Lock()
		defer finalMu.Unlock()
		final[jobID] = state
	}

	t.Run("jobs", func(t *testing.T) {
		t.Run("transform", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("transform", art.Path, "/out/app.txt")
			spec.Artifacts = []keyspace.Artifact{art}
			spec.Outputs = []keyspace.Output{
				{Path: "/out/app.txt", URL: blobs.url("out/app.txt")},
				{Path: "/out/none", URL: blobs.url("out/none"), Optional: true},
			}
			hist := e.history("job-transform")
			e.assign("h1", "job-transform", spec)
			st := e.waitState("job-transform", keyspace.StateDown)
			if st.ExitCode == nil || *st.ExitCode != 0 || st.Error != "" {
				t.Errorf("down state = %+v, want exit code 0 and no error", st)
			}
			out, ok := blobs.blob("out/app.txt")
			if want := "transformed:HELLO, BUILD\n"; !ok || string(out) != want {
				t.Errorf("uploaded output = %q (present %v), want %q", out, ok, want)
			}
			if _, ok := blobs.blob("out/none"); ok {
				t.Error("a missing optional output was uploaded")
			}
			e.waitRemoved("job-transform")
			if texts := e.logTexts(api, "job-transform"); !slices.Contains(texts, fmt.Sprintf("transformed %d bytes", len(src))) {
				t.Errorf("log of the removed job = %q, want its output", texts)
			}
			checkFinal(t, hist(), keyspace.StateDown)
			done("job-transform", keyspace.StateDown)

			// A second job with the same artifact uses the cached copy.
			gets, _ := blobs.counts()
			spec.Outputs = []keyspace.Output{{Path: "/out/app.txt", URL: blobs.url("out/again.txt")}}
			e.assign("h1", "job-again", spec)
			e.waitState("job-again", keyspace.StateDown)
			after, _ := blobs.counts()
			if after["src/app.txt"] != gets["src/app.txt"] {
				t.Errorf("the cached artifact was downloaded again: %d GETs, were %d", after["src/app.txt"], gets["src/app.txt"])
			}
			if out, _ := blobs.blob("out/again.txt"); !bytes.HasPrefix(out, []byte("transformed:")) {
				t.Errorf("second output = %q", out)
			}
			done("job-again", keyspace.StateDown)
		})

		t.Run("wrong digest", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("transform", "/in/app.txt", "/out/app.txt")
			spec.Artifacts = []keyspace.Artifact{{URL: blobs.url("src/copy.txt"), Digest: digestOf([]byte("something else")), Path: art.Path}}
			spec.Outputs = []keyspace.Output{{Path: "/out/app.txt", URL: blobs.url("out/wrong.txt")}}
			hist := e.history("job-digest")
			e.assign("h1", "job-digest", spec)
			st := e.waitState("job-digest", keyspace.StateCrashed)
			for _, want := range []string{"artifact /in/app.txt", "digest mismatch", digestOf(src), spec.Artifacts[0].Digest} {
				if !strings.Contains(st.Error, want) {
					t.Errorf("error %q does not say %q", st.Error, want)
				}
			}
			for _, s := range hist() {
				if s.ContainerID != "" {
					t.Errorf("a container was created for a job whose artifact failed its digest: %+v", s)
				}
			}
			if n := len(e.jobContainers("job-digest")); n != 0 {
				t.Errorf("%d containers of a job whose artifact failed its digest", n)
			}
			if _, ok := blobs.blob("out/wrong.txt"); ok {
				t.Error("an output was uploaded for a job that never ran")
			}
			checkFinal(t, hist(), keyspace.StateCrashed)
			done("job-digest", keyspace.StateCrashed)
		})

		t.Run("gantryd mounted", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("stat", "/usr/local/bin/gantryd")
			spec.MountGantryd = true
			e.assign("h1", "job-stat", spec)
			e.waitState("job-stat", keyspace.StateDown)
			want := fmt.Sprintf("/usr/local/bin/gantryd size=%d", exeInfo.Size())
			if texts := e.logTexts(api, "job-stat"); !slices.Contains(texts, want) {
				t.Errorf("output %q, want %q (the agent's executable, read-only)", texts, want)
			}
			done("job-stat", keyspace.StateDown)
		})

		t.Run("user", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("id")
			spec.User = "4321:4322"
			e.assign("h1", "job-user", spec)
			e.waitState("job-user", keyspace.StateDown)
			if texts := e.logTexts(api, "job-user"); !slices.Contains(texts, "uid=4321 gid=4322") {
				t.Errorf("output %q, want uid=4321 gid=4322", texts)
			}
			done("job-user", keyspace.StateDown)
		})

		t.Run("missing output", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("id")
			spec.Outputs = []keyspace.Output{{Path: "/out/nothing", URL: blobs.url("out/nothing")}}
			e.assign("h1", "job-missing", spec)
			st := e.waitState("job-missing", keyspace.StateCrashed)
			if st.ExitCode == nil || *st.ExitCode != 0 || !strings.Contains(st.Error, "output /out/nothing: not found in the container") {
				t.Errorf("state = %+v, want exit code 0 and the missing output named", st)
			}
			e.waitRemoved("job-missing")
			done("job-missing", keyspace.StateCrashed)
		})

		t.Run("upload refused", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("transform", art.Path, "/out/app.txt")
			spec.Artifacts = []keyspace.Artifact{art}
			spec.Outputs = []keyspace.Output{{Path: "/out/app.txt", URL: blobs.url("big/app.txt")}}
			e.assign("h1", "job-big", spec)
			st := e.waitState("job-big", keyspace.StateCrashed)
			if !strings.Contains(st.Error, "output /out/app.txt: PUT") || !strings.Contains(st.Error, "413") || !strings.Contains(st.Error, "too_large") {
				t.Errorf("error %q, want the 413 and its message", st.Error)
			}
			if _, puts := blobs.counts(); puts["big/app.txt"] != 1 {
				t.Errorf("%d PUTs of a refused output, want 1 (no retry)", puts["big/app.txt"])
			}
			e.waitRemoved("job-big")
			done("job-big", keyspace.StateCrashed)
		})

		t.Run("upload fails", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec("transform", art.Path, "/out/app.txt")
			spec.Artifacts = []keyspace.Artifact{art}
			spec.Outputs = []keyspace.Output{{Path: "/out/app.txt", URL: blobs.url("fail/app.txt")}}
			e.assign("h1", "job-fail", spec)
			st := e.waitState("job-fail", keyspace.StateCrashed)
			if !strings.Contains(st.Error, "output /out/app.txt: PUT") || !strings.Contains(st.Error, "500") {
				t.Errorf("error %q, want the failed upload", st.Error)
			}
			if _, puts := blobs.counts(); puts["fail/app.txt"] != 3 {
				t.Errorf("%d PUTs of a failing output, want 3 tries", puts["fail/app.txt"])
			}
			e.waitRemoved("job-fail")
			done("job-fail", keyspace.StateCrashed)
		})

		t.Run("non-zero exit", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec()
			spec.Env = map[string]string{"EXIT_AFTER": "10ms", "EXIT_CODE": "3"}
			spec.Outputs = []keyspace.Output{{Path: "/out/app.txt", URL: blobs.url("out/never.txt")}}
			hist := e.history("job-exit")
			e.assign("h1", "job-exit", spec)
			st := e.waitState("job-exit", keyspace.StateCrashed)
			if st.ExitCode == nil || *st.ExitCode != 3 || !slices.Contains(st.LastLines, "last words 30") {
				t.Errorf("state = %+v, want exit code 3 and the last lines", st)
			}
			e.waitRemoved("job-exit")
			if _, puts := blobs.counts(); puts["out/never.txt"] != 0 {
				t.Error("outputs were uploaded after a failed run")
			}
			checkFinal(t, hist(), keyspace.StateCrashed)
			done("job-exit", keyspace.StateCrashed)
		})

		t.Run("stopped while running", func(t *testing.T) {
			t.Parallel()
			e := e.sub(t)
			spec := e.oneOffSpec() // no PORT: it idles until stopped
			spec.Outputs = []keyspace.Output{{Path: "/out/app.txt", URL: blobs.url("out/stopped.txt")}}
			e.assign("h1", "job-cancel", spec)
			e.waitState("job-cancel", keyspace.StateUp)
			e.unassign("h1", "job-cancel")
			waitFor(t, "the cancelled job removed", func() (bool, string) {
				st, ok := e.jobState("job-cancel")
				return !ok && len(e.jobContainers("job-cancel")) == 0, fmt.Sprintf("%+v", st)
			})
			if _, puts := blobs.counts(); puts["out/stopped.txt"] != 0 {
				t.Error("outputs were uploaded for a stopped job")
			}
		})
	})
	if t.Failed() {
		return
	}

	// A restarted agent runs none of the finished jobs again: their final
	// states stay, no container is created, nothing is transferred. One
	// more job exits (with status 0) while the agent is down: the next run
	// finds its container exited and completes it.
	late := e.oneOffSpec()
	late.Env = map[string]string{"EXIT_AFTER": "4s", "EXIT_CODE": "0"}
	e.assign("h1", "job-late", late)
	var lateID string
	// Up, not only created: a container the agent created but had not
	// started when it stopped would never exit.
	waitFor(t, "the container of job-late to run", func() (bool, string) {
		st, _ := e.jobState("job-late")
		lateID = st.ContainerID
		return lateID != "" && st.State == keyspace.StateUp, fmt.Sprintf("%+v", st)
	})
	gets, puts := blobs.counts()
	before, _, _ := e.hostRecord("h1")
	first.stop(t)
	waitFor(t, "job-late to exit while the agent is down", func() (bool, string) {
		info := e.inspect(lateID)
		return info.State.Status == "exited", info.State.Status
	})
	final["job-late"] = keyspace.StateDown
	e.start(cfg)
	waitFor(t, "the new run's host record", func() (bool, string) {
		h, _, _ := e.hostRecord("h1")
		return h.StartedAt.After(before.StartedAt), fmt.Sprintf("%+v", h)
	})
	api = e.api("h1")
	waitFor(t, "the restarted agent to take over the finished jobs", func() (bool, string) {
		jobs, err := api.ListJobs(t.Context())
		if err != nil {
			return false, err.Error()
		}
		got := map[string]string{}
		for _, j := range jobs {
			got[j.JobID] = j.State
		}
		return fmt.Sprint(got) == fmt.Sprint(final), fmt.Sprintf("%v, want %v", got, final)
	})
	for id, want := range final {
		if st, ok := e.jobState(id); !ok || st.State != want {
			t.Errorf("after the restart job %s = %+v (present %v), want %s", id, st, ok, want)
		}
	}
	e.waitRemoved("job-late")
	if n := len(e.containers(e.cluster)); n != 0 {
		t.Errorf("%d containers after the restart, want none", n)
	}
	if g, p := blobs.counts(); fmt.Sprint(g, p) != fmt.Sprint(gets, puts) {
		t.Errorf("transfers after the restart: GETs %v PUTs %v, were %v %v", g, p, gets, puts)
	}

	// Removing the assignment removes the job for good.
	e.unassign("h1", "job-transform")
	waitFor(t, "the finished job's key deleted", func() (bool, string) {
		st, ok := e.jobState("job-transform")
		return !ok, fmt.Sprintf("%+v", st)
	})
	if _, err := os.Stat(cfg.StateDir + "/finished/job-transform.json"); !os.IsNotExist(err) {
		t.Errorf("the record of a removed job is still there: %v", err)
	}
}
