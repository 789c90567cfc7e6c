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
// Requests arrive on the HTTP listener through the router's own HTTP/1.1
// server (h1server), built for the proxy's hot path: one goroutine per
// connection, state reused across a connection's requests, and the client's
// socket looked at only while a backend keeps a request waiting. The HTTPS
// listener uses net/http's server (HTTP/2 and HTTP/1.1). Both hand requests
// to the same proxy (frontend.serve).
//
// Requests go to backends over the router's own HTTP/1.1 client: one pool of
// keep-alive connections per instance, least in-flight requests chosen by
// two random choices, and an explicit retry rule (see forward). WebSocket and
// other upgrades are spliced, bodies are streamed in both directions, and
// HTTP/2 is offered on the HTTPS listener.
package router
