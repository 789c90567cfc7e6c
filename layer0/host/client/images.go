package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// SaveResultTrailer is the HTTP trailer that ends GET /v1/images/save:
// SaveResultOK when the agent sent the whole archive, otherwise why it
// stopped. The status line is sent before `docker save` begins (an engine
// may take minutes to assemble a large image), so a failure after it can
// only be told this way.
const SaveResultTrailer = "Gantry-Save-Result"

// SaveResultOK is the SaveResultTrailer of a complete archive.
const SaveResultOK = "ok"

// SaveImage streams `docker save` of the image ref from the agent's
// engine: a tar archive that `docker load` takes. An image the agent's
// engine lacks gives an *Error matching ErrImageNotFound. Only ctx bounds
// the body (the headers come within RequestTimeout); reading it returns
// io.EOF only once the agent has said that the archive is complete, and
// an error otherwise. The caller closes it.
func (c *Client) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	resp, err := c.do(ctx, http.MethodGet, "/v1/images/save?"+url.Values{"ref": {ref}}.Encode())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	return &imageArchive{ref: ref, resp: resp, cancel: cancel}, nil
}

// imageArchive is the body of GET /v1/images/save, checked against its
// trailer at the end.
type imageArchive struct {
	ref    string
	resp   *http.Response
	cancel context.CancelFunc
}

func (a *imageArchive) Read(p []byte) (int, error) {
	n, err := a.resp.Body.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		switch res := a.resp.Trailer.Get(SaveResultTrailer); res {
		case SaveResultOK:
		case "":
			err = fmt.Errorf("save image %s: the archive ended without its result (the agent stopped?)", a.ref)
		default:
			err = fmt.Errorf("save image %s: the agent stopped sending: %s", a.ref, res)
		}
	case err != nil:
		err = fmt.Errorf("save image %s: %w", a.ref, err)
	}
	return n, err
}

// Close ends the stream. It is safe to call more than once.
func (a *imageArchive) Close() error {
	a.cancel()
	return a.resp.Body.Close()
}
