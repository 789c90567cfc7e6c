// Package testenv starts real dependencies (PostgreSQL, etcd, Docker) for tests.
package testenv
