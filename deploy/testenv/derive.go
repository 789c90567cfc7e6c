package testenv

import (
	"crypto/rand"
	"testing"

	"github.com/docker/docker/client"
)

// DeriveTestImage builds an image FROM base, a local image (such as one of
// BuildTestImage), with one layer of its own: a file of random bytes at
// /layer. Its configuration (entrypoint, ...) is base's. The image gets a
// unique reference, returned, and is removed in t.Cleanup; removing it
// removes its own layer and leaves base alone. Nothing is pulled.
func DeriveTestImage(t testing.TB, docker *client.Client, base string) string {
	t.Helper()
	layer := make([]byte, 4<<10)
	rand.Read(layer)
	return buildImage(t, docker, "gantry-test/derived:"+randomHex(6), []contextFile{
		{"Dockerfile", 0o644, []byte("FROM " + base + "\nCOPY layer /layer\n")},
		{"layer", 0o644, layer},
	})
}
