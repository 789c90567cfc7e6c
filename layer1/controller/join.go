package controller

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// JoinPath is the endpoint a host joining the cluster asks, over TLS
// (`gantryd join`); it takes the join token's secret as its bearer token,
// not an API token.
const JoinPath = "/cluster/join"

// JoinFunc answers a joining host: it checks the join token's secret and
// returns what the host needs (the body of the answer, JSON). An error that
// is a *types.Error is the answer's status and message.
type JoinFunc func(ctx context.Context, secret string, body []byte) ([]byte, error)

// maxJoinBody bounds the body of a join request.
const maxJoinBody = 64 << 10

// join serves JoinPath: over TLS only, with the join token's secret.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Join == nil {
		writeError(w, types.ErrNotFound.WithMessage("this controller does not take hosts into the cluster"))
		return
	}
	if r.TLS == nil {
		writeError(w, types.ErrBadRequest.WithMessage("a host joins over TLS only, with the CA of its join token: use gantryd join"))
		return
	}
	secret, ok := bearerToken(r)
	if !ok {
		unauthorized(w, "missing join token")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJoinBody+1))
	if err != nil {
		writeError(w, types.ErrBadRequest.WithMessage("read the request: %v", err))
		return
	}
	if len(body) > maxJoinBody {
		writeError(w, types.ErrTooLarge.WithMessage("a join request is at most %d bytes", maxJoinBody))
		return
	}
	answer, err := s.cfg.Join(r.Context(), secret, body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(answer)
}

// tlsRecordHandshake is the first byte of a TLS connection.
const tlsRecordHandshake = 0x16

// sniffTimeout bounds the wait for a connection's first byte.
const sniffTimeout = 10 * time.Second

// sniffListener serves HTTP and TLS on one listener: a connection whose
// first byte opens a TLS handshake is served over TLS with cfg, the others
// as they are. So the API's one port takes the CLI's plain HTTP and a
// joining host's TLS.
type sniffListener struct {
	net.Listener
	cfg *tls.Config

	conns chan net.Conn
	errc  chan error
	once  sync.Once
	done  chan struct{}
}

func newSniffListener(ln net.Listener, cfg *tls.Config) *sniffListener {
	l := &sniffListener{Listener: ln, cfg: cfg, conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

// acceptLoop accepts connections and reads each one's first byte in a
// goroutine of its own, so that a slow client holds up no one.
func (l *sniffListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		go l.sniff(c)
	}
}

func (l *sniffListener) sniff(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(c, 1)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var conn net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == tlsRecordHandshake {
		conn = tls.Server(conn, l.cfg)
	}
	select {
	case l.conns <- conn:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection, TLS or not.
func (l *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener; connections being sniffed are closed.
func (l *sniffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveTLSToo wraps ln so that it serves TLS as well when cfg has a TLS
// configuration.
func serveTLSToo(ln net.Listener, cfg *tls.Config) net.Listener {
	if cfg == nil {
		return ln
	}
	return newSniffListener(ln, cfg)
}
