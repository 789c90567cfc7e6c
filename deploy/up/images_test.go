package up

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/gantryhq/gantry/deploy/testenv"
)

// TestRemoveStaleImages imports three one-file images into a repository of
// its own, gives one to a container, and checks which tags go: only the
// old, unused one that is not kept; none while they are younger than the
// minimum age.
func TestRemoveStaleImages(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Docker")
	}
	dk := testenv.Docker(t)
	ctx := t.Context()
	b := make([]byte, 4)
	rand.Read(b)
	repo := "gantry-test/stale-" + hex.EncodeToString(b)
	refs := map[string]string{}
	for _, tag := range []string{"current", "used", "stale"} {
		ref := repo + ":" + tag
		refs[tag] = ref
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		body := []byte(ref) // a different image each
		tw.WriteHeader(&tar.Header{Name: "id", Mode: 0o644, Size: int64(len(body))})
		tw.Write(body)
		tw.Close()
		rc, err := dk.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Contains(out, []byte("sha256:")) {
			t.Fatalf("import %s: %v\n%s", ref, err, out)
		}
		t.Cleanup(func() { dk.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })
	}
	c, err := dk.ContainerCreate(ctx, &container.Config{Image: refs["used"], Cmd: []string{"/id"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dk.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })

	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name   string
		minAge time.Duration
		want   []string
	}{
		{"younger than the minimum age", time.Hour, nil},
		{"old", 0, []string{refs["stale"]}},
		{"again: nothing left to remove", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := removeStaleImages(ctx, dk, repo, refs["current"], tc.minAge, log)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("removeStaleImages = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	for _, tag := range []string{"current", "used"} {
		if _, err := dk.ImageInspect(ctx, refs[tag]); err != nil {
			t.Errorf("%s: %v", refs[tag], err)
		}
	}
}
