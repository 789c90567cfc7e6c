// Package logaggregator is the service that keeps the apps' logs: the host
// agents ship their jobs' output to it, the router its access lines and the
// controller the platform's events, and `gantry log` reads them back
// through the controller.
//
//	host agents ──┐  POST /v1/ingest/frames (binary frames, streamed)
//	router ───────┼──────────────────────────────────> aggregator ── <data>/<app>.ndjson
//	controller ───┘  (or POST /v1/ingest, NDJSON)          │
//	gantry log ──> controller GET /v1/apps/{app}/log ──────┘ (proxied, streamed)
//
// Each app has a bounded history (Config.Lines, 10,000 lines by default)
// kept in time order in memory and in an append-only file per app, which is
// rewritten to the bound once it holds twice as many lines, so a restart
// keeps the history. A line already kept (same source, job, time and text)
// is not kept twice, so a shipper can send a batch again when it does not
// know whether it arrived, and a host agent that re-reads the recent output
// of the containers it adopts adds nothing.
//
// Deleting an app deletes its history (DELETE /v1/apps/{app}/log, called by
// the controller).
//
// Shippers use the Shipper of package client, which sends the compact
// frames of types.AppendFrame; NDJSON on POST /v1/ingest stays for other
// producers and older shippers. Both keep the same lines, and the files are
// NDJSON either way. The wire types are in package types.
package logaggregator
