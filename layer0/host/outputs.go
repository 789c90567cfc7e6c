package host

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// outputAttempts is how many times an output upload is tried when it fails
// in a way that may pass later (Docker or the network, a 5xx answer).
const outputAttempts = 3

// uploaded describes one output upload.
type uploaded struct {
	size   int64
	digest string
}

// uploadOutputs uploads the outputs of a one-off job's exited container,
// in order. A missing optional output is skipped; any other failure ends
// the uploads with an error that names the output.
func (j *job) uploadOutputs(ctx context.Context, containerID string) error {
	for _, o := range j.spec().Outputs {
		var up uploaded
		var err error
		for attempt, wait := 1, time.Second; ; attempt, wait = attempt+1, 2*wait {
			up, err = j.a.uploadOutput(ctx, containerID, o)
			if err == nil || errors.Is(err, errRefused) || attempt == outputAttempts || ctx.Err() != nil {
				break
			}
			j.log.Warn("output upload failed; retrying", "output", o.Path, "attempt", attempt, "err", err, "in", wait)
			if sleep(ctx, wait) != nil {
				break
			}
		}
		switch {
		case errors.Is(err, errMissing) && o.Optional:
			j.log.Info("optional output missing; skipped", "output", o.Path)
		case err != nil:
			return fmt.Errorf("output %s: %w", o.Path, err)
		default:
			j.log.Info("output uploaded", "output", o.Path, "url", o.URL, "bytes", up.size, "digest", up.digest)
		}
	}
	return nil
}

// errMissing is the failure of an output missing from its container. It is
// refused: trying again cannot fix it.
var errMissing = &refusedError{msg: "not found in the container"}

// uploadOutput copies one file out of a container and PUTs it to the
// output's URL with the platform token, streaming: the tar stream Docker
// sends is read straight into the request body, never written to disk or
// held whole in memory. Only a regular file is accepted. When the answer
// is JSON with a "digest" (as the blobstore's is), it must match what was
// sent.
func (a *agent) uploadOutput(ctx context.Context, containerID string, o keyspace.Output) (uploaded, error) {
	ctx, cancel := context.WithTimeout(ctx, transferTimeout)
	defer cancel()
	rc, stat, err := a.docker.CopyFromContainer(ctx, containerID, o.Path)
	if cerrdefs.IsNotFound(err) {
		return uploaded{}, errMissing
	}
	if err != nil {
		return uploaded{}, fmt.Errorf("copy from the container: %w", err)
	}
	defer rc.Close()
	if !stat.Mode.IsRegular() {
		return uploaded{}, refused("not a regular file (%s)", stat.Mode)
	}
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		return uploaded{}, fmt.Errorf("read the copy from the container: %w", err)
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Name != path.Base(o.Path) || hdr.Size < 0 {
		return uploaded{}, refused("the container sent %q (type %q) instead of the regular file", hdr.Name, hdr.Typeflag)
	}

	h := sha256.New()
	var body io.Reader = http.NoBody // a zero ContentLength with a body would mean "unknown"
	if hdr.Size > 0 {
		body = io.TeeReader(tr, h)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, o.URL, body)
	if err != nil {
		return uploaded{}, refused("PUT %s: %v", o.URL, err)
	}
	req.ContentLength = hdr.Size
	req.Header.Set("Authorization", "Bearer "+a.cfg.APIToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := a.transfers.Do(req)
	if err != nil {
		return uploaded{}, fmt.Errorf("PUT %s: %w", o.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return uploaded{}, statusError("PUT", o.URL, resp)
	}
	sent := "sha256:" + hex.EncodeToString(h.Sum(nil))
	var answer struct {
		Digest string `json:"digest"`
	}
	answerBody, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if json.Unmarshal(answerBody, &answer) == nil && answer.Digest != "" && answer.Digest != sent {
		return uploaded{}, fmt.Errorf("PUT %s: the server stored digest %s, but %s was sent", o.URL, answer.Digest, sent)
	}
	return uploaded{size: hdr.Size, digest: sent}, nil
}
