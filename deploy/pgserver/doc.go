// Package pgserver runs a private PostgreSQL server from the PostgreSQL
// binaries installed on the machine, for `gantryd up` and for tests.
//
// The server lives in one directory (Config.Dir): the cluster files in
// Dir/pgdata (created with initdb on the first start: UTF8, locale C, trust
// authentication on the local socket, no TCP), the unix socket in Dir itself,
// and the output of initdb and postgres in Dir/postgres.log. It listens on no
// TCP port; clients connect through the socket with the connection string
// from Server.URL.
//
// The binaries are looked up in PATH first, then in
// /usr/lib/postgresql/<version>/bin (highest version first). When they are
// missing, Start returns ErrNoBinaries, whose message says how to install
// them.
//
// PostgreSQL refuses to run as root. When the process runs with effective
// uid 0, initdb and postgres run as the "postgres" user (or "nobody" when
// there is no such user): Start chowns Dir and everything under it to that
// user and grants search permission (o+x, never read) on the parent
// directories that lack it, so that the user can reach Dir, e.g. under
// /root or in a 0700 temporary directory.
//
// The postgres process runs in its own process group, so terminal signals
// meant for the parent do not reach it directly; the parent stops it with
// Stop (a fast shutdown). If the parent dies without calling Stop, the kernel
// sends postgres SIGINT (a fast shutdown too) through the parent-death
// signal, so the server never outlives the process that started it.
package pgserver
