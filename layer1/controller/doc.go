// Package controller serves the controller API v1 (docs/API.md): apps,
// config vars, SSH keys, releases, formations, deployments, jobs, routes
// and builds, kept in PostgreSQL by package store.
//
// Run is the entry point of `gantryd controller` and `gantryd up`: it applies
// the database migrations, listens and serves until its context ends. Once
// started, the server keeps running while PostgreSQL or etcd is unreachable
// and answers 503 "unavailable" meanwhile; requests succeed again as soon as
// they are back.
//
// This package is the API; each other role of the control plane is a
// package of its own, which the Server wires together and runs:
//
//   - mirror: the only writer of the etcd key families formations/ and
//     routes/ of its cluster. Every change is mirrored there at once, and
//     a full re-sync from PostgreSQL runs at start and every
//     ResyncInterval.
//   - deployer: moves each deployment a step at a time, replacing the old
//     release's jobs one by one or all at once and rolling back when a
//     new job fails (see store.AdvanceDeployment).
//   - build: turns a source archive (POST /v1/apps/{app}/builds, stored
//     by this package) into a slug in a one-off job on the builder image,
//     makes a release of it and follows its deployment, streaming the
//     output, one build of an app at a time under its PostgreSQL lock.
//   - gc: the garbage collection of blobs, large objects, etcd's history
//     and the host agents' leftovers, every GCInterval and at POST /v1/gc.
//
// Jobs are listed from etcd and killed through the host agents' API;
// slugs, build caches and sources live in the blobstore, served under
// /v1/blobs/.
//
// Every /v1/ request needs an API token (Authorization: Bearer <token>). The
// database keeps only the SHA-256 of each token; CreateAdminToken makes the
// "admin" token. The platform's host token is accepted too, for the blobs,
// the key and app lookups of the git receiver and builds only.
package controller
