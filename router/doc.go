// Package router is Gantry's HTTP and HTTPS router: it sends each request to
// a live instance of the app that owns the request's Host.
//
// The router follows two etcd key families: the routes under
// keyspace.Routes() (router/types.Route values written by the controller)
// and every discovery service (instances registered by the host agents).
// Each change rebuilds an immutable routing table that requests read through
// an atomic pointer, so a change is in effect as soon as etcd reports it.
//
// Hosts match exactly first, then by wildcard: "*.example.com" matches one
// more label ("a.example.com", neither "example.com" nor "a.b.example.com").
// The port and one trailing dot are ignored and matching is case-insensitive.
//
// HTTP/1 requests arrive, on both listeners, through the router's own
// HTTP/1.1 server (package router/internal/h1), built for the proxy's hot
// path: one goroutine per connection, state reused across a connection's
// requests, and the client's socket looked at only while a backend keeps a
// request waiting. On the HTTPS listener it does the TLS handshake and
// hands the connections that negotiate HTTP/2 to net/http's server, whose
// requests are checked with the same rules (h1.CheckRequest). Both hand
// requests to the same proxy (frontend.serve). Clients are bounded by
// inactivity deadlines on request heads, bodies, responses and upgraded
// connections, and by a cap on open connections (Config.Limits).
//
// Requests go to backends over the router's own HTTP/1.1 client: one pool of
// keep-alive connections per instance, least in-flight requests chosen by
// two random choices, and an explicit retry rule (see forward). WebSocket and
// other upgrades are spliced, bodies are streamed in both directions, and
// HTTP/2 is offered on the HTTPS listener.
//
// A new router can take the listening sockets of a running one over a
// Unix socket (Config.HandoverSocket, handover.go), so that a restart or an
// upgrade closes no listening socket: the old router drains once the new
// one serves.
package router
