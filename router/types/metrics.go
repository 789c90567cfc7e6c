package types

// Service is the discovery service under which each router registers the
// address of its metrics endpoint (GET /metrics, Prometheus text, with the
// platform's token). The instance ID is the router's ID.
const Service = "gantry-router"

// The per-app metrics of a router's /metrics.
const (
	// RequestsMetric counts requests routed to an app, by app and
	// status_class ("1xx" to "5xx"; "other" for a client that left before
	// an answer).
	RequestsMetric = "gantry_router_requests_total"
	// BytesMetric counts response body bytes sent to clients, by app.
	BytesMetric = "gantry_router_response_bytes_total"
	// LatencyMetric is a histogram of the time from a request's arrival to
	// the end of its response, in seconds, by app.
	LatencyMetric = "gantry_router_request_duration_seconds"
)
