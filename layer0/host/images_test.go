package host_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"

	"github.com/gantryhq/gantry/deploy/testenv"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// testImageSaveAPI checks GET /v1/images/save: the token, the reference's
// validation, a missing image, and a whole archive of a present one.
func testImageSaveAPI(t *testing.T, f *fixture) {
	ref := testenv.DeriveTestImage(t, f.docker, f.image)
	e := f.env(t)
	e.start(e.config("a"))
	h := e.healthyHost("a")

	tests := []struct {
		name   string
		ref    string
		token  string
		status int
		code   string
	}{
		{"no token", ref, "", http.StatusUnauthorized, "unauthorized"},
		{"wrong token", ref, "wrong", http.StatusUnauthorized, "unauthorized"},
		{"unknown image", "gantry-test/absent:" + randomHex(t, 4), token, http.StatusNotFound, "image_not_found"},
		{"no reference", "", token, http.StatusBadRequest, "bad_request"},
		{"path", "../../containers/json", token, http.StatusBadRequest, "bad_request"},
		{"upper case", "gantry-test/Absent:1", token, http.StatusBadRequest, "bad_request"},
		{"two references", ref + " " + ref, token, http.StatusBadRequest, "bad_request"},
		{"too long", "a" + strings.Repeat("/b", 300), token, http.StatusBadRequest, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, h.APIURL+"/v1/images/save?"+url.Values{"ref": {tc.ref}}.Encode(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body hostclient.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == nil {
				t.Fatalf("status %d, body not an API error: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || body.Error.Code != tc.code {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, body.Error.Code, body.Error.Message, tc.status, tc.code)
			}
		})
	}

	t.Run("client of a missing image", func(t *testing.T) {
		_, err := e.api("a").SaveImage(t.Context(), "gantry-test/absent:"+randomHex(t, 4))
		if !errors.Is(err, hostclient.ErrImageNotFound) {
			t.Errorf("SaveImage = %v, want ErrImageNotFound", err)
		}
	})
	t.Run("archive", func(t *testing.T) {
		path := e.saveArchive("a", ref)
		if tags := archiveTags(t, path); !slices.Equal(tags, []string{ref}) {
			t.Errorf("archive tags %v, want [%s]", tags, ref)
		}
	})
}

// testImageFetch removes an image from the engine that every test host
// shares and has an agent, b, run two jobs of it: b asks the healthy hosts
// first, the agent a, which lacks it too, and p0, whose archive stops
// short, then the unhealthy host p, which answers with the archive a's API
// sent before the removal (p stands for a host whose engine still has the
// image: there is no second engine). b loads it once for both jobs, and
// the image is back with its ID.
func testImageFetch(t *testing.T, f *fixture) {
	ref := testenv.DeriveTestImage(t, f.docker, f.image)
	e := f.env(t)
	e.start(e.config("a"))
	e.start(e.config("b"))
	e.healthyHost("a")
	e.healthyHost("b")
	want := e.imageID(ref)
	archive := e.saveArchive("a", ref)

	if _, err := f.docker.ImageRemove(t.Context(), ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.docker.ImageInspect(t.Context(), ref); !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect after removal = %v, want not found", err)
	}
	broken := e.replayPeer("p0", true, ref, archive, 64<<10)
	p := e.replayPeer("p", false, ref, archive, 0)

	spec := e.webSpec("xfer", nil)
	spec.Image = ref
	e.assign("b", "job-xfer-1", spec)
	e.assign("b", "job-xfer-2", spec)
	for _, id := range []string{"job-xfer-1", "job-xfer-2"} {
		if st := e.waitState(id, keyspace.StateUp); st.HostID != "b" {
			t.Errorf("job %s up on %q, want b", id, st.HostID)
		}
	}
	if got := e.imageID(ref); got != want {
		t.Errorf("image ID after the fetch %s, want %s", got, want)
	}
	if n := p.requests.Load(); n != 1 {
		t.Errorf("host p was asked %d times, want once for both jobs", n)
	}
	if n := broken.requests.Load(); n != 1 {
		t.Errorf("host p0 was asked %d times, want once", n)
	}
}

// testImageFetchFails has an agent run a job of an image no host has: the
// job crashes with the hosts it asked, healthy first, and why each failed.
func testImageFetchFails(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("a"))
	e.start(e.config("b"))
	e.healthyHost("a")
	e.healthyHost("b")
	// Nothing listens on port 1 of the loopback.
	e.putHost(keyspace.Host{ID: "q", Addr: "127.0.0.1", APIURL: "http://127.0.0.1:1", Healthy: false})

	spec := e.webSpec("nowhere", nil)
	spec.Image = "gantry-test/absent:" + randomHex(t, 4)
	e.assign("b", "job-nowhere", spec)
	st := e.waitState("job-nowhere", keyspace.StateCrashed)
	want := "image not found: " + spec.Image + "; asked host a: does not have it, " +
		"host q: cannot reach its API: dial tcp 127.0.0.1:1: connect: connection refused"
	if st.Error != want || st.ContainerID != "" {
		t.Errorf("state = %+v, want no container and the error %q", st, want)
	}
	if n := len(e.containers(e.cluster)); n != 0 {
		t.Errorf("%d containers, want none", n)
	}
}

// healthyHost waits until the host's record says it is healthy.
func (e *env) healthyHost(id string) keyspace.Host {
	e.t.Helper()
	var h keyspace.Host
	waitFor(e.t, "host "+id+" healthy", func() (bool, string) {
		var ok bool
		h, _, ok = e.hostRecord(id)
		return ok && h.Healthy, fmt.Sprintf("%+v (present %v)", h, ok)
	})
	return h
}

// putHost writes a host record with no agent behind it.
func (e *env) putHost(h keyspace.Host) {
	e.t.Helper()
	val, err := json.Marshal(h)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.etcd.Put(e.t.Context(), e.space.Host(h.ID), string(val)); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := e.etcd.Delete(ctx, e.space.Host(h.ID)); err != nil {
			e.t.Errorf("delete host record %s: %v", h.ID, err)
		}
	})
}

func (e *env) imageID(ref string) string {
	e.t.Helper()
	info, err := e.docker.ImageInspect(e.t.Context(), ref)
	if err != nil {
		e.t.Fatalf("inspect image %s: %v", ref, err)
	}
	return info.ID
}

// saveArchive saves ref through the API of agent hostID into a file, and
// returns its path.
func (e *env) saveArchive(hostID, ref string) string {
	e.t.Helper()
	body, err := e.api(hostID).SaveImage(e.t.Context(), ref)
	if err != nil {
		e.t.Fatal(err)
	}
	defer body.Close()
	path := filepath.Join(e.t.TempDir(), "image.tar")
	out, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, body); err != nil {
		e.t.Fatalf("read the archive of %s: %v", ref, err)
	}
	return path
}

// archiveTags returns the RepoTags of the manifest of a `docker save`
// archive.
func archiveTags(t *testing.T, path string) []string {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	tr := tar.NewReader(file)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json in the archive: %v", err)
		}
		if hdr.Name != "manifest.json" {
			continue
		}
		var manifest []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
			t.Fatalf("manifest.json: %v", err)
		}
		var tags []string
		for _, m := range manifest {
			tags = append(tags, m.RepoTags...)
		}
		return tags
	}
}

// peer is a host record whose API serves, as an agent does, the archive
// of one image, and counts the requests for it.
type peer struct {
	requests atomic.Int32
}

// replayPeer registers host id, whose API answers GET /v1/images/save for
// ref with the archive at path; with cut > 0, with only its first cut
// bytes, then a trailer that says it stopped short.
func (e *env) replayPeer(id string, healthy bool, ref, path string, cut int64) *peer {
	e.t.Helper()
	p := &peer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(hostclient.ErrorBody{Error: hostclient.NewError(hostclient.ErrUnauthorized, "wrong token")})
			return
		}
		if r.URL.Path != "/v1/images/save" || r.URL.Query().Get("ref") != ref {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(hostclient.ErrorBody{Error: hostclient.NewError(hostclient.ErrImageNotFound, "no such image")})
			return
		}
		p.requests.Add(1)
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Trailer", hostclient.SaveResultTrailer)
		file, err := os.Open(path)
		if err != nil {
			w.Header().Set(hostclient.SaveResultTrailer, err.Error())
			return
		}
		defer file.Close()
		var src io.Reader = file
		if cut > 0 {
			src = io.LimitReader(file, cut)
		}
		if _, err := io.Copy(w, src); err != nil {
			w.Header().Set(hostclient.SaveResultTrailer, err.Error())
			return
		}
		result := hostclient.SaveResultOK
		if cut > 0 {
			result = "cut short by the test"
		}
		w.Header().Set(hostclient.SaveResultTrailer, result)
	}))
	e.t.Cleanup(srv.Close)
	e.putHost(keyspace.Host{ID: id, Addr: "127.0.0.1", APIURL: srv.URL, Healthy: healthy})
	return p
}
