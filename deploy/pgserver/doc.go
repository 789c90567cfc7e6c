// Package pgserver runs a private PostgreSQL server, for `gantryd up` and
// for tests, in one of two modes: from the PostgreSQL binaries installed on
// the machine (Start, a Server) or in a container of the gantry/postgres
// image (StartContainer, a Container).
//
// # Machine binaries
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
//
// # Container
//
// StartContainer runs the server in a container of the PostgreSQL image
// that `gantryd stack build` makes (stack.PostgresRef):
//
//	ContainerConfig.Dir/pgdata    --bind-->  /var/lib/postgresql/data
//	ContainerConfig.Dir/password  --bind, read only-->  /run/gantry/postgres-password
//	host network: postgres listens on ContainerConfig.Addr itself
//
// The container is named gantry-<cluster>-<host>-postgres and labelled
// gantry.system=postgres, gantry.cluster and gantry.host, so several hosts
// sharing one Docker Engine each touch only their own. It uses the host's
// network rather than a published port: the server listens on exactly the
// given address (127.0.0.2:5432 for a test host), with no proxy in between,
// and sees the clients' real addresses. Its restart policy is
// unless-stopped: the engine restarts it after a crash or a reboot, not
// after `docker stop` or `docker kill`.
//
// Clients authenticate with a password over TCP (SCRAM-SHA-256; peer on
// the socket inside the container, for `docker exec -u postgres psql -h
// /tmp`). The password is made once, kept in Dir/password (mode 0600) and
// mounted into the container, whose start-up script sets it in single-user
// mode before the server starts: it is never in the image, on a command
// line or in the environment. The script also makes the cluster on the
// first start (initdb), and gives a data directory made in the
// machine-binaries mode to the image's postgres user, so that an existing
// server moves into a container with its data.
//
// With ContainerConfig.TLSDir (the host's cluster TLS directory) the
// server serves TLS with the host certificate and takes TCP connections
// only over TLS; Container.URL then carries sslmode=verify-full and the
// cluster CA as sslrootcert, and TLSURL rewrites such a URL for another
// host's own CA file.
//
// Start-up adopts the container when it exists with the same image and
// configuration (started if it is not running) and replaces it otherwise;
// the data stays in Dir. Container.Stop shuts the server down (SIGINT, a
// fast shutdown) and removes the container.
package pgserver
