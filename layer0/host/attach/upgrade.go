package attach

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Protocol is the value of the Upgrade header of an attach request and of
// its 101 answer.
const Protocol = "gantry-attach/1"

// maxErrorBody bounds the error answer Dial keeps.
const maxErrorBody = 64 << 10

// IsUpgrade reports whether r asks to switch to the attach protocol
// ("Connection: Upgrade" and "Upgrade: gantry-attach/1").
func IsUpgrade(r *http.Request) bool {
	upgrade := false
	for _, v := range r.Header.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			upgrade = upgrade || strings.EqualFold(strings.TrimSpace(tok), "upgrade")
		}
	}
	return upgrade && strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), Protocol)
}

// Conn is a connection switched to the attach protocol.
type Conn struct {
	net.Conn
	// r holds what was read past the HTTP exchange.
	r *bufio.Reader
}

func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite shuts down the writing side of the connection when it can
// (TCP, TLS), so that the peer reads what was sent and then the end of
// the stream, and closes it otherwise.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Upgrade answers the request of w with 101 Switching Protocols, with the
// headers set on w, and takes over its connection. Nothing may have been
// written to w before.
func Upgrade(w http.ResponseWriter) (*Conn, error) {
	var head strings.Builder
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h := w.Header().Clone()
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", Protocol)
	if err := h.Write(&head); err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	head.WriteString("\r\n")
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("attach: take over the connection: %w", err)
	}
	// The request's deadlines no longer apply.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	_, err = rw.WriteString(head.String())
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach: answer the upgrade: %w", err)
	}
	return &Conn{Conn: conn, r: rw.Reader}, nil
}

// Dial sends req (an http or https URL) on a connection of its own, asking
// to switch to the attach protocol, and returns the connection once the
// server answered 101. Any other answer is returned with a nil Conn, its
// body (up to 64 KiB) read into memory, for the caller to decode. ctx
// bounds the dial and the wait for the answer, not the connection after
// it; handshake, when positive, bounds them too.
func Dial(ctx context.Context, req *http.Request, handshake time.Duration) (*Conn, *http.Response, error) {
	if handshake > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, handshake)
		defer cancel()
	}
	addr, err := dialAddr(req)
	if err != nil {
		return nil, nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if req.URL.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: req.URL.Hostname(), NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tc
	}
	// The context bounds the exchange: it closes the connection if it
	// ends first.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", Protocol)
	br := bufio.NewReader(conn)
	resp, err := exchange(conn, br, req)
	if !stop() {
		conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, nil, err
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		conn.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, resp, nil
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), Protocol) {
		conn.Close()
		return nil, nil, fmt.Errorf("attach: the server switched to %q, not %s", resp.Header.Get("Upgrade"), Protocol)
	}
	return &Conn{Conn: conn, r: br}, resp, nil
}

// exchange writes req and reads its answer.
func exchange(conn net.Conn, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("attach: send the request: %w", err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("attach: read the answer: %w", err)
	}
	return resp, nil
}

// dialAddr is the host:port to dial for req.
func dialAddr(req *http.Request) (string, error) {
	u := req.URL
	if u == nil || u.Host == "" {
		return "", errors.New("attach: the request has no host")
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "http":
		port = "80"
	case u.Scheme == "https":
		port = "443"
	default:
		return "", fmt.Errorf("attach: unsupported URL scheme %q", u.Scheme)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("attach: unsupported URL scheme %q", u.Scheme)
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
