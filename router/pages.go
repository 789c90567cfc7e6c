package router

import (
	"html"
	"io"
	"net/http"
	"strconv"
)

// The router's own answers are short HTML pages that say what is wrong in
// the words of the user who deployed the app.
const (
	badHostPage = "<!doctype html>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>The request has no valid Host.</p>\n"
	badBodyPage = "<!doctype html>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>The request body could not be read.</p>\n"
)

// refusedPage is the page of a request refused by the protocol rules.
func refusedPage(status int) string {
	text := html.EscapeString(http.StatusText(status))
	return "<!doctype html>\n<title>" + strconv.Itoa(status) + " " + text + "</title>\n<h1>" + text +
		"</h1>\n<p>The router does not accept this request.</p>\n"
}

func notFoundPage(host string) string {
	return "<!doctype html>\n<title>404 No such app</title>\n<h1>No such app</h1>\n<p>There is no app at <b>" +
		html.EscapeString(host) + "</b>.</p>\n"
}

func noInstancePage(app string) string {
	return "<!doctype html>\n<title>503 Service Unavailable</title>\n<h1>Service Unavailable</h1>\n<p>The app <b>" +
		html.EscapeString(app) + "</b> has no running web process.</p>\n"
}

func badGatewayPage(app string) string {
	return "<!doctype html>\n<title>502 Bad Gateway</title>\n<h1>Bad Gateway</h1>\n<p>The web process of <b>" +
		html.EscapeString(app) + "</b> did not answer properly.</p>\n"
}

func timeoutPage(app string) string {
	return "<!doctype html>\n<title>504 Gateway Timeout</title>\n<h1>Gateway Timeout</h1>\n<p>The web process of <b>" +
		html.EscapeString(app) + "</b> took too long to answer.</p>\n"
}

// page answers with one of the router's own pages.
func (x *exchange) page(status int, body string) {
	h := x.w.Header()
	h["Content-Type"] = []string{"text/html; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = []string{"no-store"}
	h["X-Request-Id"] = x.idHeader()
	x.w.WriteHeader(status)
	n, _ := io.WriteString(x.w, body)
	x.status = status
	x.bytes = int64(n)
}

var _ http.Handler = (*frontend)(nil)
