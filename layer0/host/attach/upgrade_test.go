package attach

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoServer upgrades attach requests and echoes each stdin frame back as
// stdout, then exits 0 at the end of stdin; other requests get 400.
func echoServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsUpgrade(r) {
			http.Error(w, `{"error":{"code":"bad_request","message":"not an attach request"}}`, http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		conn, err := Upgrade(w)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fw := NewWriter(conn)
		if err := fw.Write(Frame{Type: Stderr, Data: body}); err != nil {
			return
		}
		fr := NewReader(conn)
		for {
			f, err := fr.Read()
			if err != nil {
				return
			}
			if f.Type == Stdin && len(f.Data) == 0 {
				fw.Write(ExitFrame(0))
				return
			}
			fw.Write(Frame{Type: Stdout, Data: f.Data})
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDialUpgrade(t *testing.T) {
	srv := echoServer(t)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/run", strings.NewReader(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	conn, resp, err := Dial(t.Context(), req, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	w, r := NewWriter(conn), NewReader(conn)
	want := []Frame{{Type: Stderr, Data: []byte(`{"x":1}`)}, {Type: Stdout, Data: []byte("one")}, {Type: Stdout, Data: []byte("two")}, ExitFrame(0)}
	for _, in := range []string{"one", "two", ""} {
		if err := w.Write(Frame{Type: Stdin, Data: []byte(in)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, wf := range want {
		f, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != wf.Type || string(f.Data) != string(wf.Data) {
			t.Fatalf("got %v %q, want %v %q", f.Type, f.Data, wf.Type, wf.Data)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after exit: %v, want EOF", err)
	}
}

func TestDialRefused(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":"job_not_found","message":"no job"}}`)
	}))
	t.Cleanup(refuse.Close)
	// A server that answers 101 to another protocol.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		rw.Flush()
	}))
	t.Cleanup(other.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	tests := []struct {
		name       string
		url        string
		wantStatus int // 0: an error
	}{
		{"error answer", refuse.URL, http.StatusNotFound},
		{"another protocol", other.URL, 0},
		{"nothing listening", closed, 0},
		{"no answer within the handshake", "http://" + silent.Addr().String(), 0},
		{"unsupported scheme", "ftp://127.0.0.1:1/", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			conn, resp, err := Dial(t.Context(), req, 500*time.Millisecond)
			if conn != nil {
				conn.Close()
				t.Fatal("got a connection")
			}
			if tc.wantStatus == 0 {
				if err == nil {
					t.Fatalf("no error; status %d", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), "job_not_found") {
				t.Fatalf("status %d, body %q; want %d with the error body", resp.StatusCode, body, tc.wantStatus)
			}
		})
	}
}

func TestDialContextEnds(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequest(http.MethodPost, "http://"+silent.Addr().String(), nil)
	done := make(chan error, 1)
	go func() {
		_, _, err := Dial(ctx, req, 0)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial: %v, want context.Canceled", err)
	}
}
