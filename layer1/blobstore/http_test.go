package blobstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// apiError decodes an error answer's body.
func apiError(t *testing.T, body []byte) *types.Error {
	t.Helper()
	var eb types.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return eb.Error
}

func TestHandler(t *testing.T) {
	t.Parallel()
	const maxSize = 1000
	e := newEnv(t, Config{MaxSize: maxSize})
	data := content(9, 700)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}

	// The blob every case below starts from.
	resp, body := e.do(t, "PUT", PathPrefix+"slugs/demo/v1.tgz", bytes.NewReader(data), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	var blob Blob
	if err := json.Unmarshal(body, &blob); err != nil {
		t.Fatal(err)
	}
	if blob.Path != "slugs/demo/v1.tgz" || blob.Digest != digest(data) || blob.Size != int64(len(data)) {
		t.Errorf("PUT answered %+v", blob)
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   io.Reader
		header http.Header
		status int
		code   string // error code, for error answers
	}{
		{"put with the right digest", "PUT", "a/with-digest", strings.NewReader("x"),
			hdr(DigestHeader, digest([]byte("x"))), http.StatusCreated, ""},
		{"put with the digest in upper case", "PUT", "a/upper", strings.NewReader("x"),
			hdr(DigestHeader, "sha256:"+strings.ToUpper(strings.TrimPrefix(digest([]byte("x")), "sha256:"))), http.StatusCreated, ""},
		{"put of an empty blob", "PUT", "a/empty", http.NoBody, nil, http.StatusCreated, ""},
		{"put with the wrong digest", "PUT", "a/wrong", strings.NewReader("x"),
			hdr(DigestHeader, digest([]byte("y"))), http.StatusUnprocessableEntity, "digest_mismatch"},
		{"put with a malformed digest", "PUT", "a/bad", strings.NewReader("x"),
			hdr(DigestHeader, "md5:abc"), http.StatusBadRequest, "bad_request"},
		{"put above the limit (Content-Length)", "PUT", "a/big", bytes.NewReader(content(1, maxSize+1)),
			nil, http.StatusRequestEntityTooLarge, "too_large"},
		{"put above the limit (chunked)", "PUT", "a/big", io.MultiReader(bytes.NewReader(content(1, maxSize+1))),
			nil, http.StatusRequestEntityTooLarge, "too_large"},
		{"put of exactly the limit (chunked)", "PUT", "a/limit", io.MultiReader(bytes.NewReader(content(1, maxSize))),
			nil, http.StatusCreated, ""},
		{"put to dot-dot", "PUT", "a/../b", strings.NewReader("x"), nil, http.StatusUnprocessableEntity, "invalid"},
		{"put to escaped dot-dot", "PUT", "%2e%2e/b", strings.NewReader("x"), nil, http.StatusUnprocessableEntity, "invalid"},
		{"put to an escaped slash", "PUT", "a%2F%2Fb", strings.NewReader("x"), nil, http.StatusUnprocessableEntity, "invalid"},
		{"put to an empty segment", "PUT", "a//b", strings.NewReader("x"), nil, http.StatusUnprocessableEntity, "invalid"},
		{"put to the prefix itself", "PUT", "", strings.NewReader("x"), nil, http.StatusUnprocessableEntity, "invalid"},
		{"put to a space", "PUT", "a%20b", strings.NewReader("x"), nil, http.StatusUnprocessableEntity, "invalid"},
		{"get unknown", "GET", "no/such", nil, nil, http.StatusNotFound, "blob_not_found"},
		{"get invalid", "GET", "a/./b", nil, nil, http.StatusUnprocessableEntity, "invalid"},
		{"head unknown", "HEAD", "no/such", nil, nil, http.StatusNotFound, ""},
		{"delete unknown", "DELETE", "no/such", nil, nil, http.StatusNotFound, "blob_not_found"},
		{"delete invalid", "DELETE", "..", nil, nil, http.StatusUnprocessableEntity, "invalid"},
		{"post", "POST", "a/b", strings.NewReader("x"), nil, http.StatusMethodNotAllowed, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.largeObjects(t)
			resp, body := e.do(t, tt.method, PathPrefix+tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, body, tt.status)
			}
			if tt.code != "" {
				if got := apiError(t, body); got.Code != tt.code || got.Message == "" {
					t.Errorf("error %+v, want code %s and a message", got, tt.code)
				}
				if resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("error Content-Type %q", resp.Header.Get("Content-Type"))
				}
			}
			if tt.method == "PUT" && tt.status != http.StatusCreated {
				if after := e.largeObjects(t); after != before {
					t.Errorf("a rejected PUT changed the large objects from %d to %d", before, after)
				}
			}
		})
	}
	if resp, _ := e.do(t, "POST", PathPrefix+"a/b", nil, nil); resp.Header.Get("Allow") != "DELETE, GET, HEAD, PUT" {
		t.Errorf("405 Allow = %q", resp.Header.Get("Allow"))
	}

	t.Run("outside the prefix", func(t *testing.T) {
		resp, body := e.do(t, "GET", "/v2/blobs/a", nil, nil)
		if resp.StatusCode != http.StatusNotFound || apiError(t, body).Code != "not_found" {
			t.Errorf("GET outside the prefix: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("get and head", func(t *testing.T) {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := e.do(t, method, PathPrefix+"slugs/demo/v1.tgz", nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", method, resp.StatusCode, body)
			}
			want := map[string]string{
				"Content-Type":   "application/octet-stream",
				"Content-Length": strconv.Itoa(len(data)),
				DigestHeader:     digest(data),
				"ETag":           strconv.Quote(digest(data)),
				"Last-Modified":  blob.CreatedAt.Format(http.TimeFormat),
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s %s = %q, want %q", method, k, got, v)
				}
			}
			wantBody := data
			if method == "HEAD" {
				wantBody = nil
			}
			if !bytes.Equal(body, wantBody) {
				t.Errorf("%s body: %d bytes, want %d", method, len(body), len(wantBody))
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		if resp, body := e.do(t, "PUT", PathPrefix+"del/me", strings.NewReader("x"), nil); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %d %s", resp.StatusCode, body)
		}
		if resp, body := e.do(t, "DELETE", PathPrefix+"del/me", nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
		}
		if resp, _ := e.do(t, "GET", PathPrefix+"del/me", nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET after DELETE: %d", resp.StatusCode)
		}
	})

	t.Run("corrupted blob", func(t *testing.T) {
		big := content(10, 3*ChunkSize)
		e2 := newEnv(t, Config{})
		if _, err := e2.store.Put(t.Context(), "c", bytes.NewReader(big), 0); err != nil {
			t.Fatal(err)
		}
		e2.exec(t, `SELECT lo_put($1, 0, '\x00')`, e2.oidOf(t, "c"))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", e2.srv.URL+PathPrefix+"c", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e2.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= len(big) {
			t.Errorf("GET of a corrupted blob: %d of %d bytes, %v; want a short body", len(got), len(big), err)
		}
	})
}

// TestHandlerInterruptedUpload sends a PUT whose body ends before its
// Content-Length and checks that nothing is stored.
func TestHandlerInterruptedUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.srv.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	size := 3 * ChunkSize
	fmt.Fprintf(conn, "PUT %scut HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", PathPrefix, size)
	if _, err := conn.Write(content(11, ChunkSize+5)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitFor(t, 30*time.Second, "the upload's connection to return to the pool", func() bool {
		return e.pool.Stat().AcquiredConns() == 0 && e.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()`) == 0
	})
	if _, err := e.store.Stat(t.Context(), "cut"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of an interrupted upload = %v, want ErrNotFound", err)
	}
	if n := e.largeObjects(t); n != 0 {
		t.Errorf("%d large objects after an interrupted upload, want 0", n)
	}
}
