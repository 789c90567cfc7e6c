// Package backup writes and restores a Gantry platform's backup archive:
// everything needed to bring every app back on a new machine, taken while
// the platform runs.
//
// An archive is a gzip-compressed tar stream with these entries, in order:
//
//	manifest.json        format version, cluster ID, gantryd version, time
//	identity/cluster-id  the cluster's identity and secrets (see Identity)
//	identity/host-token
//	identity/admin.env
//	identity/git-host-key
//	identity/secrets.key   seals the private keys in the dump (may be absent)
//	postgres.dump        pg_dump --format=custom of the controller's database:
//	                     apps, releases, config, routes, certificates, keys,
//	                     tokens, and the blobstore's large objects (slugs)
//	git.tar              the git receiver's bare repositories
//
// The database dump is one consistent snapshot (pg_dump runs in a single
// repeatable-read transaction), so a backup needs no downtime. What the
// archive leaves out is derived or disposable: etcd's keys (the controller
// re-creates them from PostgreSQL on start), the host agents' state, build
// caches, logs, and images of image releases, which stay in the Docker
// engines that have them.
//
// The archive holds secrets (tokens, the SSH host key, TLS private keys):
// Write never writes it anywhere itself but to the io.Writer it is given,
// and the gantryd command creates its output file with mode 0600.
//
// Restore refuses any entry it does not know, bounds every size, and
// extracts the repositories through slugrunner.Unpack, which keeps every
// entry inside the target directory.
package backup
