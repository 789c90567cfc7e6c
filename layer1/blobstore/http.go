package blobstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// PathPrefix is the URL path under which Handler serves blobs.
	PathPrefix = "/v1/blobs/"
	// DigestHeader carries a blob's digest, "sha256:<hex>": in answers to
	// GET and HEAD, and optionally in a PUT, whose body must then match it.
	DigestHeader = "X-Gantry-Digest"
)

// apiErrors maps the store's errors to API errors.
var apiErrors = []struct {
	err error
	api *types.Error
}{
	{ErrInvalidPath, types.ErrInvalid},
	{ErrNotFound, types.ErrBlobNotFound},
	{ErrTooLarge, types.ErrTooLarge},
	{ErrDigestMismatch, types.ErrDigestMismatch},
	{ErrUnavailable, types.ErrUnavailable},
}

// Handler serves the blobs over HTTP, with the error shape of the
// controller API (docs/API.md):
//
//   - PUT PathPrefix+path: stores the body, streamed, at path. With a
//     DigestHeader, a body that does not match it is rejected with 422
//     digest_mismatch. 413 too_large above Config.MaxSize. Answers 201 with
//     the Blob as JSON. Nothing is stored when the answer is not 201.
//   - GET: streams the content with Content-Length, DigestHeader and ETag
//     (the quoted digest). If the content turns out not to match its
//     digest, the last chunk is withheld and the connection closed, so the
//     client sees a short body.
//   - HEAD: the headers of GET.
//   - DELETE: 204.
//
// Unknown blobs answer 404 blob_not_found, invalid paths 422 invalid. The
// handler does no authentication: the controller mounts it behind its own.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Store) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		writeError(w, types.ErrNotFound)
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.servePut(w, r, path)
	case http.MethodGet:
		s.serveGet(w, r, path)
	case http.MethodHead:
		s.serveHead(w, r, path)
	case http.MethodDelete:
		if err := s.Delete(r.Context(), path); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		// Sorted, as the controller's other 405 answers list them.
		w.Header().Set("Allow", "DELETE, GET, HEAD, PUT")
		writeError(w, types.ErrMethodNotAllowed.WithMessage("%s is not allowed on %s; use DELETE, GET, HEAD, PUT", r.Method, r.URL.Path))
	}
}

func (s *Store) servePut(w http.ResponseWriter, r *http.Request, path string) {
	var want string
	if h := r.Header.Get(DigestHeader); h != "" {
		d, err := parseDigest(h)
		if err != nil {
			writeError(w, types.ErrBadRequest.WithMessage("%s: %v", DigestHeader, err))
			return
		}
		want = d
	}
	if err := ValidatePath(path); err != nil {
		s.fail(w, r, err)
		return
	}
	if r.ContentLength > s.cfg.MaxSize {
		writeError(w, types.ErrTooLarge.WithMessage("the blob is larger than %d bytes", s.cfg.MaxSize))
		return
	}
	body := &bodyReader{r: r.Body}
	blob, err := s.put(r.Context(), path, body, s.cfg.MaxSize, want)
	if err != nil {
		if body.err != nil && errors.Is(err, body.err) || r.Context().Err() != nil {
			// The client went away or sent a broken body: its fault,
			// and nothing was stored.
			s.log.Warn("blob upload interrupted", "path", path, "err", err)
			writeError(w, types.ErrBadRequest.WithMessage("the upload was interrupted"))
			return
		}
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, blob)
}

func (s *Store) serveGet(w http.ResponseWriter, r *http.Request, path string) {
	blob, rc, err := s.Get(r.Context(), path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	setBlobHeaders(w, blob)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		// The body is short of its Content-Length: net/http closes the
		// connection and the client sees the failure.
		if errors.Is(err, ErrDigestMismatch) {
			s.log.Error("blob corrupted", "path", path, "err", err)
		} else {
			s.log.Warn("blob download interrupted", "path", path, "err", err)
		}
	}
}

func (s *Store) serveHead(w http.ResponseWriter, r *http.Request, path string) {
	blob, err := s.Stat(r.Context(), path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	setBlobHeaders(w, blob)
	w.WriteHeader(http.StatusOK)
}

func setBlobHeaders(w http.ResponseWriter, blob Blob) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(blob.Size, 10))
	h.Set(DigestHeader, blob.Digest)
	h.Set("ETag", strconv.Quote(blob.Digest))
	h.Set("Last-Modified", blob.CreatedAt.Format(http.TimeFormat))
}

// parseDigest checks a "sha256:<hex>" digest and returns it with its hex
// digits in lower case.
func parseDigest(s string) (string, error) {
	hexDigits, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexDigits) != 64 {
		return "", fmt.Errorf("%q is not sha256:<64 hex digits>", s)
	}
	hexDigits = strings.ToLower(hexDigits)
	for i := 0; i < len(hexDigits); i++ {
		if c := hexDigits[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("%q is not sha256:<64 hex digits>", s)
		}
	}
	return "sha256:" + hexDigits, nil
}

// bodyReader remembers the error of the request body, so that a failed
// upload is told apart from a failure of the store.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// fail answers err: a store error as its API error, anything else as a 500
// whose details go only to the log.
func (s *Store) fail(w http.ResponseWriter, r *http.Request, err error) {
	for _, m := range apiErrors {
		if !errors.Is(err, m.err) {
			continue
		}
		switch m.api {
		case types.ErrBlobNotFound:
			writeError(w, m.api.WithMessage("no blob at %q", strings.TrimPrefix(r.URL.Path, PathPrefix)))
		case types.ErrUnavailable:
			s.log.Warn("PostgreSQL unreachable", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, m.api.WithMessage("PostgreSQL is unreachable"))
		default:
			// These errors are built by this package and name no
			// internals.
			writeError(w, m.api.WithMessage("%v", err))
		}
		return
	}
	s.log.Error("blob request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, types.ErrInternal)
}

func writeError(w http.ResponseWriter, e *types.Error) {
	w.Header().Del("Content-Length")
	writeJSON(w, e.Status, types.ErrorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// An error here means the client went away; nothing left to do.
	_ = json.NewEncoder(w).Encode(v)
}
