package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The handover protocol lets a new router take the listening sockets of a
// running one (Config.HandoverSocket), so that a restart or an upgrade
// closes no listening socket and fails no request. The running router (the
// giver) listens on a Unix socket of type SOCK_SEQPACKET; each message is
// one packet holding one JSON object (handoverMsg). The new router (the
// taker):
//
//	taker                                   giver
//	  take {listeners: name+addr wanted} ──>  peer uid checked (SO_PEERCRED)
//	  <── listeners {name+addr}, fds          (SCM_RIGHTS, one per listener)
//	  serves on the fds
//	  ready ─────────────────────────────>   stops accepting, drains
//	  <── done                                (keep-alives off, grace)
//	  places its own socket at the path
//
// or, instead of listeners, an error with a code (handoverCode). Both ends
// hold the listening sockets from the moment the fds are sent until the
// giver has drained, so a connection in a listen queue is always accepted
// by one of them.

// ErrHandoverBusy is returned by Run when the router on the handover
// socket is already handing its listeners to another new router.
var ErrHandoverBusy = errors.New("router: the running router is handing its listeners to another router")

// errNoGiver means that no router answers on the handover socket (none,
// or a stale socket file): the new router binds the addresses itself.
var errNoGiver = errors.New("no router answers on the handover socket")

// handoverVersion is the protocol version every message carries.
const handoverVersion = 1

// maxHandoverMsg bounds a handover message in bytes.
const maxHandoverMsg = 4096

// Timeouts of the handover exchange.
const (
	// handoverStepTimeout bounds the dial and each message but the wait
	// for ready.
	handoverStepTimeout = 5 * time.Second
	// handoverReadyTimeout bounds the giver's wait for the taker's ready:
	// the taker reads the routes and services from etcd first.
	handoverReadyTimeout = 2 * time.Minute
)

// Message types.
const (
	msgTake      = "take"
	msgListeners = "listeners"
	msgReady     = "ready"
	msgDone      = "done"
	msgError     = "error"
)

// handoverCode is the code of an error message.
type handoverCode string

const (
	// codeClosing: the giver has closed its listeners (it is shutting
	// down); the taker binds the addresses itself.
	codeClosing handoverCode = "closing"
	// codeBusy: the giver is handing over to another taker, or has.
	codeBusy handoverCode = "busy"
	// codeMismatch: a listener the taker wants has another address at the
	// giver.
	codeMismatch handoverCode = "mismatch"
	// codeFailed: the giver could not send its listeners, or gave up
	// waiting for the taker's ready; it keeps serving.
	codeFailed handoverCode = "failed"
)

// Listener names.
const (
	lnHTTP    = "http"
	lnHTTPS   = "https"
	lnMetrics = "metrics"
)

// handoverMsg is one message of the handover protocol.
type handoverMsg struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	// PID is the sender's process ID, for the logs (take).
	PID int `json:"pid,omitempty"`
	// Listeners are those the taker wants (take), or those sent, one per
	// file descriptor in order (listeners).
	Listeners []handoverListener `json:"listeners,omitempty"`
	Code      handoverCode       `json:"code,omitempty"`
	Message   string             `json:"message,omitempty"`
}

// handoverListener names a listener and its configured address.
type handoverListener struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// parseHandoverMsg decodes and checks one message that came with nfds file
// descriptors.
func parseHandoverMsg(b []byte, nfds int) (handoverMsg, error) {
	var m handoverMsg
	if len(b) > maxHandoverMsg {
		return m, fmt.Errorf("handover message of %d bytes, over %d", len(b), maxHandoverMsg)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("handover message: %w", err)
	}
	if m.V != handoverVersion {
		return m, fmt.Errorf("handover message version %d, want %d", m.V, handoverVersion)
	}
	wantFDs := 0
	switch m.Type {
	case msgTake, msgListeners:
		if m.Type == msgListeners {
			wantFDs = len(m.Listeners)
		}
		seen := map[string]bool{}
		for _, l := range m.Listeners {
			switch l.Name {
			case lnHTTP, lnHTTPS, lnMetrics:
			default:
				return m, fmt.Errorf("handover message: unknown listener %q", l.Name)
			}
			if seen[l.Name] {
				return m, fmt.Errorf("handover message: listener %q twice", l.Name)
			}
			seen[l.Name] = true
			if _, _, err := net.SplitHostPort(l.Addr); err != nil {
				return m, fmt.Errorf("handover message: listener %s addr %q: want host:port", l.Name, l.Addr)
			}
		}
		if !seen[lnHTTP] {
			return m, fmt.Errorf("handover message %s without the http listener", m.Type)
		}
	case msgReady, msgDone:
		if len(m.Listeners) > 0 {
			return m, fmt.Errorf("handover message %s with listeners", m.Type)
		}
	case msgError:
		switch m.Code {
		case codeClosing, codeBusy, codeMismatch, codeFailed:
		default:
			return m, fmt.Errorf("handover error message with code %q", m.Code)
		}
		if len(m.Listeners) > 0 {
			return m, errors.New("handover error message with listeners")
		}
	default:
		return m, fmt.Errorf("handover message of type %q", m.Type)
	}
	if nfds != wantFDs {
		return m, fmt.Errorf("handover message %s came with %d file descriptors, want %d", m.Type, nfds, wantFDs)
	}
	return m, nil
}

// handoverConn is one end of a handover connection.
type handoverConn struct {
	c *net.UnixConn
}

// send writes m with the file descriptors of files, within the step
// timeout.
func (hc handoverConn) send(m handoverMsg, files ...*os.File) error {
	m.V = handoverVersion
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode handover %s: %w", m.Type, err)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			// Not f.Fd(): it puts the socket in blocking mode, a flag
			// that the listeners of both routers share, whose accept
			// loops would then block in the kernel.
			sc, err := f.SyscallConn()
			if err != nil {
				return fmt.Errorf("send handover %s: %w", m.Type, err)
			}
			if err := sc.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
				return fmt.Errorf("send handover %s: %w", m.Type, err)
			}
		}
		oob = syscall.UnixRights(fds...)
	}
	hc.c.SetWriteDeadline(time.Now().Add(handoverStepTimeout))
	if _, _, err := hc.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send handover %s: %w", m.Type, err)
	}
	return nil
}

// maxHandoverFDs bounds the file descriptors a message may carry.
const maxHandoverFDs = 3

// recv reads one message and the file descriptors that came with it,
// waiting up to timeout. The caller owns the returned files, also when the
// message is malformed; on an error none is returned.
func (hc handoverConn) recv(timeout time.Duration) (handoverMsg, []*os.File, error) {
	b := make([]byte, maxHandoverMsg+1)
	oob := make([]byte, syscall.CmsgSpace(4*maxHandoverFDs))
	hc.c.SetReadDeadline(time.Now().Add(timeout))
	n, oobn, flags, _, err := hc.c.ReadMsgUnix(b, oob)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		err = errPeerGone
	}
	if err != nil {
		return handoverMsg{}, nil, fmt.Errorf("read handover message: %w", err)
	}
	files, ferr := filesOf(oob[:oobn])
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	switch {
	case ferr != nil:
		closeAll()
		return handoverMsg{}, nil, ferr
	case flags&syscall.MSG_CTRUNC != 0:
		closeAll()
		return handoverMsg{}, nil, errors.New("read handover message: file descriptors cut off")
	case n == 0:
		closeAll()
		return handoverMsg{}, nil, fmt.Errorf("read handover message: %w", errPeerGone)
	}
	m, err := parseHandoverMsg(b[:n], len(files))
	if err != nil {
		closeAll()
		return m, nil, err
	}
	return m, files, nil
}

// errPeerGone is a handover connection closed by the other end.
var errPeerGone = errors.New("the other router closed the connection")

// filesOf returns the file descriptors of SCM_RIGHTS messages in oob as
// files.
func filesOf(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handover control message: %w", err)
	}
	var files []*os.File
	var perr error
	for _, cm := range msgs {
		fds, err := syscall.ParseUnixRights(&cm)
		if err != nil {
			perr = fmt.Errorf("handover file descriptors: %w", err)
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "handover-"+strconv.Itoa(fd)))
		}
	}
	if perr != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, perr
	}
	return files, nil
}

// checkPeer makes sure the other end of c runs as this process's user.
func checkPeer(c *net.UnixConn) error {
	uid, err := peerUID(c)
	if err != nil {
		return fmt.Errorf("handover peer credentials: %w", err)
	}
	if want := os.Getuid(); uid != want {
		return fmt.Errorf("handover peer runs as uid %d, not %d", uid, want)
	}
	return nil
}

// giver offers a serving router's listeners on the handover socket.
type giver struct {
	log  *slog.Logger
	path string
	ln   *net.UnixListener
	// sock is the socket file as placed, to remove it only while it is
	// still this router's.
	sock os.FileInfo

	mu sync.Mutex
	// lns are the listeners offered, by name.
	lns    map[string]namedListener
	busy   bool // a handover is under way
	closed bool // the listeners are closed, or handed over
	// conns are the handover connections under way, closed by close.
	conns map[*net.UnixConn]struct{}
	wg    sync.WaitGroup

	// handed is closed once a taker serves the listeners.
	handed     chan struct{}
	handedOnce sync.Once
}

// namedListener is a listener and its configured address.
type namedListener struct {
	addr string
	ln   net.Listener
}

// offer places a Unix socket at path (mode 0600, through a temporary name
// and a rename over whatever is there) and hands lns to the first router
// that asks and reports ready.
func offer(path string, lns map[string]namedListener, log *slog.Logger) (*giver, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("handover socket dir: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmp, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*giver, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	sock, err := os.Stat(tmp)
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	g := &giver{log: log, path: path, ln: ln, sock: sock, lns: lns,
		conns: map[*net.UnixConn]struct{}{}, handed: make(chan struct{})}
	g.wg.Go(g.accept)
	log.Info("router offers its listeners on the handover socket", "path", path)
	return g, nil
}

func (g *giver) accept() {
	for {
		c, err := g.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		g.mu.Lock()
		if g.conns == nil {
			g.mu.Unlock()
			c.Close()
			return
		}
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		g.wg.Go(func() {
			defer func() {
				g.mu.Lock()
				delete(g.conns, c)
				g.mu.Unlock()
				c.Close()
			}()
			if err := g.serve(handoverConn{c}); err != nil {
				g.mu.Lock()
				closing := g.conns == nil
				g.mu.Unlock()
				if closing {
					g.log.Info("router handover cut off by the router's shutdown", "err", err)
				} else {
					g.log.Warn("router handover failed; still serving", "err", err)
				}
			}
		})
	}
}

// serve answers one taker.
func (g *giver) serve(hc handoverConn) error {
	if err := checkPeer(hc.c); err != nil {
		return err
	}
	m, _, err := hc.recv(handoverStepTimeout) // a take carries no files
	if err != nil {
		return err
	}
	if m.Type != msgTake {
		return fmt.Errorf("handover: got %s, want take", m.Type)
	}
	pid := m.PID
	log := g.log.With("taker_pid", pid)

	names, files, code, err := g.reserve(m.Listeners)
	if err != nil {
		hc.send(handoverMsg{Type: msgError, Code: code, Message: err.Error()})
		return err
	}
	err = hc.send(handoverMsg{Type: msgListeners, Listeners: names}, files...)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		g.release()
		return err
	}
	log.Info("router sent its listeners; waiting for the new router's ready", "listeners", names)
	m, _, err = hc.recv(handoverReadyTimeout)
	if err == nil && m.Type != msgReady {
		err = fmt.Errorf("got %s, want ready", m.Type)
	}
	if err != nil {
		g.release()
		hc.send(handoverMsg{Type: msgError, Code: codeFailed, Message: "no ready: " + err.Error()})
		return fmt.Errorf("handover to pid %d: %w", pid, err)
	}
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	// done goes first: the drain that handed starts closes this
	// connection.
	if err := hc.send(handoverMsg{Type: msgDone}); err != nil {
		log.Warn("router handover: done not sent; the new router takes over anyway", "err", err)
	}
	g.handedOnce.Do(func() { close(g.handed) })
	log.Info("router handed its listeners over; draining")
	return nil
}

// reserve marks a handover under way and returns the listeners that want
// names, with a duplicate of each socket to send.
func (g *giver) reserve(want []handoverListener) ([]handoverListener, []*os.File, handoverCode, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return nil, nil, codeClosing, errors.New("the router has closed its listeners")
	case g.busy:
		return nil, nil, codeBusy, errors.New("a handover to another router is under way")
	}
	var names []handoverListener
	var files []*os.File
	fail := func(code handoverCode, err error) ([]handoverListener, []*os.File, handoverCode, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, code, err
	}
	for _, w := range want {
		nl, ok := g.lns[w.Name]
		if !ok {
			continue // the taker binds it
		}
		if nl.addr != w.Addr {
			return fail(codeMismatch, fmt.Errorf("the %s listener is on %s here, not %s", w.Name, nl.addr, w.Addr))
		}
		fl, ok := nl.ln.(interface{ File() (*os.File, error) })
		if !ok {
			return fail(codeFailed, fmt.Errorf("the %s listener has no file descriptor", w.Name))
		}
		f, err := fl.File()
		if err != nil {
			return fail(codeFailed, fmt.Errorf("the %s listener's file descriptor: %w", w.Name, err))
		}
		names = append(names, handoverListener{Name: w.Name, Addr: nl.addr})
		files = append(files, f)
	}
	g.busy = true
	return names, files, "", nil
}

// release ends a handover that failed: the router keeps its listeners and
// may hand them over later.
func (g *giver) release() {
	g.mu.Lock()
	g.busy = false
	g.mu.Unlock()
}

// close stops offering: it marks the listeners closed and closes them
// (unless handed over, when they are closed all the same: the new router
// holds them), removes the socket file while it is still this router's,
// and ends the handovers under way. A taker that asks afterwards gets
// codeClosing and binds the addresses itself, which the closed listeners
// no longer hold.
func (g *giver) close() {
	g.mu.Lock()
	g.closed = true
	for _, nl := range g.lns {
		nl.ln.Close()
	}
	select {
	case <-g.handed:
	default:
		if fi, err := os.Stat(g.path); err == nil && os.SameFile(fi, g.sock) {
			os.Remove(g.path)
		}
	}
	g.ln.Close()
	for c := range g.conns {
		c.Close()
	}
	g.conns = nil
	g.mu.Unlock()
	g.wg.Wait()
}

// taker is a new router's side of a handover under way: it holds the
// connection to the giver until it serves the listeners.
type taker struct {
	hc  handoverConn
	log *slog.Logger
}

// take asks the router on path for the listeners want. It returns
// errNoGiver when none answers, ErrHandoverBusy, or an error for the other
// refusals; with codeClosing it returns errNoGiver too. The listeners it
// returns are by name; those want names but the giver has not are left
// out, for the caller to bind.
func take(ctx context.Context, path string, want []handoverListener, log *slog.Logger) (*taker, map[string]net.Listener, error) {
	dctx, cancel := context.WithTimeout(ctx, handoverStepTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "unixpacket", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, errNoGiver
		}
		return nil, nil, fmt.Errorf("dial the handover socket: %w", err)
	}
	hc := handoverConn{c.(*net.UnixConn)}
	lns, err := takeOn(hc, want)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return &taker{hc: hc, log: log}, lns, nil
}

func takeOn(hc handoverConn, want []handoverListener) (map[string]net.Listener, error) {
	if err := checkPeer(hc.c); err != nil {
		return nil, err
	}
	if err := hc.send(handoverMsg{Type: msgTake, PID: os.Getpid(), Listeners: want}); err != nil {
		return nil, err
	}
	m, files, err := hc.recv(handoverStepTimeout)
	if errors.Is(err, errPeerGone) {
		// The giver closed the connection on its shutdown, after closing
		// its listeners, or died with them.
		return nil, errNoGiver
	}
	if err != nil {
		return nil, err
	}
	switch m.Type {
	case msgListeners:
	case msgError:
		switch m.Code {
		case codeClosing:
			return nil, errNoGiver
		case codeBusy:
			return nil, fmt.Errorf("%w: %s", ErrHandoverBusy, m.Message)
		}
		return nil, fmt.Errorf("the running router refused the handover (%s): %s", m.Code, m.Message)
	default:
		return nil, fmt.Errorf("handover: got %s, want listeners", m.Type)
	}
	lns := map[string]net.Listener{}
	var lerr error
	for i, f := range files {
		if lerr == nil {
			var ln net.Listener
			if ln, lerr = net.FileListener(f); lerr == nil {
				lns[m.Listeners[i].Name] = ln
			} else {
				lerr = fmt.Errorf("handover %s listener: %w", m.Listeners[i].Name, lerr)
			}
		}
		f.Close()
	}
	if lerr != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, lerr
	}
	return lns, nil
}

// abort ends the handover before this router serves: the giver keeps
// serving.
func (tk *taker) abort() { tk.hc.c.Close() }

// ready tells the giver that this router serves the listeners and waits
// for its done. A giver gone meanwhile (it crashed, or it closed the
// connection on its shutdown) leaves the listeners to this router too; a
// refusal is an error, after which this router must stop (the giver keeps
// serving). A refusal sent before the ready (the giver gave up waiting)
// is still read when the ready cannot be sent.
func (tk *taker) ready() error {
	defer tk.hc.c.Close()
	serr := tk.hc.send(handoverMsg{Type: msgReady})
	if serr != nil && !errors.Is(serr, syscall.EPIPE) && !errors.Is(serr, syscall.ECONNRESET) {
		return serr
	}
	m, _, err := tk.hc.recv(handoverStepTimeout)
	switch {
	case errors.Is(err, errPeerGone):
		tk.log.Warn("the old router went away during the handover; this one keeps its listeners")
		return nil
	case err != nil:
		return err
	case m.Type == msgError:
		return fmt.Errorf("the running router called the handover off (%s): %s", m.Code, m.Message)
	case serr != nil:
		return serr
	case m.Type == msgDone:
		return nil
	}
	return fmt.Errorf("handover: got %s, want done", m.Type)
}
