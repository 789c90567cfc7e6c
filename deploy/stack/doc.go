// Package stack builds Gantry's base images locally, with no registry:
//
//   - gantry/stack:<version> runs apps: Debian bookworm (debootstrap, minbase)
//     from the apt mirror the machine's own apt configuration names, the
//     host's CA certificates, a few common runtime libraries and python3,
//     user app (uid 1000), WorkingDir /app, LANG=C.UTF-8.
//   - gantry/builder:<version> runs builds: the same root file system plus
//     build-essential, git, curl, pkg-config and python3-venv.
//   - gantry/postgres:<version> runs PostgreSQL: the stack image plus
//     Debian's postgresql-15, built by the engine (see [PostgresRef]).
//   - gantry/platform:<gantryd version>-<digest> runs the platform's own
//     containers: the builder image (git, for the git receiver) plus a
//     gantryd binary as its entrypoint, built by each host from its own
//     binary ([EnsurePlatformImage]).
//
// The build of the first three, run by [Build]:
//
//	/etc/apt/sources.list{,.d/*}    the mirror (first deb entry of the main archive)
//	        |
//	debootstrap --variant=minbase --include=<runtime packages>   .debs cached in CacheDir
//	        |
//	configure: user app, host CAs, dpkg path excludes (man, docs, locales)
//	        |
//	tar | ImageImport  -> stack image (untagged)
//	        |
//	chroot apt-get install <build tools>                         .debs cached in CacheDir
//	        |
//	tar | ImageImport  -> builder image (untagged)
//	        |
//	tag both, remove the images the tags pointed to before
//	        |
//	docker build FROM the stack: apt-get install postgresql-15 -> postgres image (tagged)
//
// Build builds only what is missing: with the stack and builder images
// present, only the PostgreSQL image. The PostgreSQL image and the platform
// image are built by the engine's classic builder from a tar context made
// in Go; the PostgreSQL build runs on the host's network with apt reading
// the mirror named by the machine's apt configuration, passed in as a
// build argument.
//
// Commands inside the root file system run through chroot in a private mount
// namespace with their own /proc, /dev and /dev/pts, so nothing they mount
// outlives them. Tags are applied only once both images are imported: a
// failed build leaves the previous images in place.
package stack
