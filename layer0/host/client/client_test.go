package client_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer0/host/client"
)

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		sentinel error
		code     string
	}{
		{"coded error", 404, `{"error":{"code":"job_not_found","message":"no job"}}`, client.ErrJobNotFound, "job_not_found"},
		{"unauthorized", 401, `{"error":{"code":"unauthorized","message":"no"}}`, client.ErrUnauthorized, "unauthorized"},
		{"plain text 404", 404, "404 page not found", client.ErrNotFound, "not_found"},
		{"proxy error", 502, "<html>bad gateway</html>", nil, "internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			_, err := client.New(srv.URL, "t").ListJobs(t.Context())
			var apiErr *client.Error
			if !errors.As(err, &apiErr) || apiErr.Status != tc.status || apiErr.Code != tc.code {
				t.Fatalf("error = %#v, want status %d code %s", err, tc.status, tc.code)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.sentinel)
			}
		})
	}
}

func TestNewError(t *testing.T) {
	e := client.NewError(client.ErrConflict, "job %s is not running", "j1")
	if e.Status != http.StatusConflict || e.Code != "conflict" || e.Message != "job j1 is not running" || !errors.Is(e, client.ErrConflict) {
		t.Errorf("NewError = %+v", e)
	}
	if e := client.NewError(errors.New("other"), "x"); e.Status != http.StatusInternalServerError || e.Code != "internal" {
		t.Errorf("NewError of an unknown sentinel = %+v", e)
	}
}

func TestRequestCarriesToken(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		io.WriteString(w, "[]")
	}))
	defer srv.Close()
	jobs, err := client.New(srv.URL+"/", "secret").ListJobs(t.Context())
	if err != nil || len(jobs) != 0 || got != "Bearer secret" {
		t.Errorf("ListJobs = %v, %v; Authorization %q", jobs, err, got)
	}
}

func TestSaveImageResult(t *testing.T) {
	tests := []struct {
		name    string
		trailer string // "" sends none
		wantErr string // "" wants the archive whole
	}{
		{"whole", client.SaveResultOK, ""},
		{"stopped short", "docker save: disk full", "the agent stopped sending: docker save: disk full"},
		{"no result", "", "the archive ended without its result"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/images/save" || r.URL.Query().Get("ref") != "demo:v2" {
					w.WriteHeader(http.StatusNotFound)
					return
				}
				w.Header().Set("Trailer", client.SaveResultTrailer)
				io.WriteString(w, "archive")
				if tc.trailer != "" {
					w.Header().Set(client.SaveResultTrailer, tc.trailer)
				}
			}))
			defer srv.Close()
			body, err := client.New(srv.URL, "t").SaveImage(t.Context(), "demo:v2")
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if string(got) != "archive" {
				t.Errorf("read %q, want %q", got, "archive")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("read error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("read error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}
