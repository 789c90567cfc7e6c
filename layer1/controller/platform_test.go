package controller_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestPlatformToken checks what the platform's host token may do: the
// blobs, the lookups of the git receiver and builds, nothing else.
func TestPlatformToken(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	line, _ := newPublicKey(t, "")
	k, err := a.c.AddKey(ctx, line)
	if err != nil {
		t.Fatal(err)
	}
	platform := client.New(a.url, a.cfg.HostToken)
	if app, err := platform.GetApp(ctx, "demo"); err != nil || app.Name != "demo" {
		t.Errorf("GetApp with the host token = %+v, %v", app, err)
	}
	if got, err := platform.GetKey(ctx, k.Fingerprint); err != nil || got.Key != line {
		t.Errorf("GetKey with the host token = %+v, %v", got, err)
	}
	if _, err := platform.Info(ctx); err != nil {
		t.Errorf("Info with the host token: %v", err)
	}
	_, err = platform.ListApps(ctx)
	wantAPIError(t, err, types.ErrForbidden, "the platform token may not GET /v1/apps")
	_, err = platform.AddKey(ctx, line)
	wantAPIError(t, err, types.ErrForbidden, "POST /v1/keys")
	wantAPIError(t, platform.DeleteApp(ctx, "demo"), types.ErrForbidden, "DELETE /v1/apps/demo")

	// Blobs: both kinds of token, streamed both ways.
	content := []byte(strings.Repeat("slug ", 1000))
	sum := sha256.Sum256(content)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	for _, tok := range []struct{ name, token string }{{"host", a.cfg.HostToken}, {"admin", a.token}} {
		t.Run(tok.name, func(t *testing.T) {
			path := "/v1/blobs/test/" + tok.name + ".tgz"
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, a.url+path, bytes.NewReader(content))
			req.Header.Set("Authorization", "Bearer "+tok.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var blob struct {
				Digest string `json:"digest"`
				Size   int64  `json:"size"`
			}
			err = json.NewDecoder(resp.Body).Decode(&blob)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusCreated || blob.Digest != digest || blob.Size != int64(len(content)) {
				t.Fatalf("PUT %s = %d %+v %v", path, resp.StatusCode, blob, err)
			}
			resp, body := a.raw(t, "GET", path, "", "Bearer "+tok.token)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, content) || resp.Header.Get("X-Gantry-Digest") != digest {
				t.Errorf("GET %s = %d, %d bytes, digest %s", path, resp.StatusCode, len(body), resp.Header.Get("X-Gantry-Digest"))
			}
		})
	}
	if resp, body := a.raw(t, "GET", "/v1/blobs/test/host.tgz", "", "Bearer wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET a blob with a wrong token = %d %s", resp.StatusCode, body)
	}
	if resp, body := a.raw(t, "GET", "/v1/blobs/test/none.tgz", "", "Bearer "+a.cfg.HostToken); resp.StatusCode != http.StatusNotFound ||
		!strings.Contains(string(body), "blob_not_found") {
		t.Errorf("GET a missing blob = %d %s", resp.StatusCode, body)
	}
}

// TestBuildRequests checks the answers of the build endpoint that come
// before any build runs.
func TestBuildRequests(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	src := strings.NewReader("not read")
	_, err := a.c.Build(ctx, "nope", "", src, nil)
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)
	_, err = a.c.Build(ctx, "demo", "not-a-commit", src, nil)
	wantAPIError(t, err, types.ErrInvalid, "not a git object ID")
	// This controller has no images configured.
	_, err = a.c.Build(ctx, "demo", "", src, nil)
	wantAPIError(t, err, types.ErrUnavailable, "runs no builds")
	// An empty archive is refused before anything runs.
	b := newAPI(t, func(c *controller.Config) {
		c.BuilderImage, c.StackImage = "gantry-test/builder:none", "gantry-test/stack:none"
	})
	if _, err := b.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	_, err = b.c.Build(ctx, "demo", "", strings.NewReader(""), nil)
	wantAPIError(t, err, types.ErrInvalid, "the source archive is empty")
	if paths := b.blobPaths(t); len(paths) != 0 {
		t.Errorf("blobs left: %v", paths)
	}
	resp, body := a.raw(t, "GET", "/v1/apps/demo/builds", "", "Bearer "+a.token)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET builds = %d %s (Allow %q)", resp.StatusCode, body, resp.Header.Get("Allow"))
	}
}
