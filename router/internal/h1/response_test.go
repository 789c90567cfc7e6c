package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestReadHead(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		in      string
		want    ResponseHead
		headers http.Header
		wantErr error
	}{
		{
			name:    "content length",
			in:      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
			want:    ResponseHead{Status: 200, Length: 5, KeepAlive: true},
			headers: http.Header{"Content-Length": {"5"}, "Content-Type": {"text/plain"}},
		},
		{
			name: "chunked drops content length and hop-by-hop headers",
			in: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nContent-Length: 3\r\nConnection: keep-alive, X-Secret\r\n" +
				"X-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: x\r\nTrailer: X-T\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
			want:    ResponseHead{Status: 200, Length: -1, Chunked: true, KeepAlive: true},
			headers: http.Header{"X-A": {"1", "2"}},
		},
		{
			name:    "until close",
			in:      "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n",
			want:    ResponseHead{Status: 200, Length: -1, KeepAlive: false},
			headers: http.Header{"X-A": {"1"}},
		},
		{
			name:    "connection close",
			in:      "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
			want:    ResponseHead{Status: 204, Length: -1, NoBody: true},
			headers: http.Header{},
		},
		{
			name:    "http/1.0 keep-alive",
			in:      "HTTP/1.0 200 OK\nContent-Length: 0\nConnection: Keep-Alive\n\n",
			want:    ResponseHead{Status: 200, Length: 0, KeepAlive: true},
			headers: http.Header{"Content-Length": {"0"}},
		},
		{
			name:    "http/1.0 default close",
			in:      "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
			want:    ResponseHead{Status: 200, Length: 0},
			headers: http.Header{"Content-Length": {"0"}},
		},
		{
			name:    "head response keeps its length",
			method:  http.MethodHead,
			in:      "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
			want:    ResponseHead{Status: 200, Length: 99, NoBody: true, KeepAlive: true},
			headers: http.Header{"Content-Length": {"99"}},
		},
		{
			name:    "informational responses are skipped",
			in:      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
			want:    ResponseHead{Status: 201, Length: 0, KeepAlive: true},
			headers: http.Header{"Content-Length": {"0"}},
		},
		{
			name:    "switching protocols",
			in:      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
			want:    ResponseHead{Status: 101, Length: -1, NoBody: true, KeepAlive: true, Upgrade: "websocket"},
			headers: http.Header{"Sec-Websocket-Accept": {"x"}},
		},
		{
			name:    "repeated equal lengths",
			in:      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
			want:    ResponseHead{Status: 200, Length: 2, KeepAlive: true},
			headers: http.Header{"Content-Length": {"2"}},
		},
		{name: "conflicting lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", wantErr: ErrBadResponse},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: ErrBadResponse},
		{name: "folded header", in: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  more\r\n\r\n", wantErr: ErrBadResponse},
		{name: "bad header name", in: "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", wantErr: ErrBadResponse},
		{name: "no colon", in: "HTTP/1.1 200 OK\r\nXA\r\n\r\n", wantErr: ErrBadResponse},
		{name: "http/2 status line", in: "HTTP/2 200 OK\r\n\r\n", wantErr: ErrBadResponse},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: ErrBadResponse},
		{name: "truncated", in: "HTTP/1.1 200 OK\r\nX-A: 1\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "empty", in: "", wantErr: io.EOF},
		{name: "too large", in: "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", 9000) + "\r\n\r\n", wantErr: ErrResponseHeadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 8<<10)
			h := http.Header{}
			got, err := ReadResponseHead(br, h, method)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(h) != 0 {
					t.Errorf("headers left after an error: %v", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("head = %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(h, tt.headers) {
				t.Errorf("headers = %v, want %v", h, tt.headers)
			}
		})
	}
}

func TestReadHeadInPieces(t *testing.T) {
	// The head arrives one byte at a time: the end is found across reads.
	in := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	br := bufio.NewReaderSize(&oneByteReader{s: in}, 8<<10)
	h := http.Header{}
	hd, err := ReadResponseHead(br, h, http.MethodGet)
	if err != nil || hd.Status != 200 || hd.Length != 2 {
		t.Fatalf("ReadResponseHead = %+v, %v", hd, err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "ok" {
		t.Errorf("body left = %q", rest)
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

// FuzzReadHead checks that the response parser never panics and that a
// head it accepts has consistent framing.
func FuzzReadHead(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close, X\r\n\r\n")
	f.Add("HTTP/1.0 100 Continue\n\nHTTP/1.1 101 S\nUpgrade: ws\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 4<<10)
		h := http.Header{}
		hd, err := ReadResponseHead(br, h, http.MethodGet)
		if err != nil {
			return
		}
		if hd.Status < 100 || hd.Status > 999 {
			t.Fatalf("status %d", hd.Status)
		}
		if hd.Chunked && hd.Length != -1 {
			t.Fatalf("chunked with length %d", hd.Length)
		}
		for _, k := range []string{"Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade", "Te", "Trailer"} {
			if _, ok := h[k]; ok {
				t.Fatalf("hop-by-hop header %s kept", k)
			}
		}
	})
}
